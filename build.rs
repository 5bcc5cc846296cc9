//! Embeds the business views (`views/*.sql`) and the shipped mappings
//! (`vault/mappings/*.toml`) in the binary, in file-name order.

use std::env;
use std::fs;
use std::path::Path;

fn embed(dir: &str, ext: &str, name: &str, out: &mut String) {
    println!("cargo:rerun-if-changed={dir}");
    let root = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let mut files: Vec<String> = fs::read_dir(Path::new(&root).join(dir))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|f| f.ends_with(ext))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    out.push_str(&format!("pub const {name}: &[(&str, &str)] = &[\n"));
    for f in files {
        println!("cargo:rerun-if-changed={dir}/{f}");
        out.push_str(&format!(
            "    ({f:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/{dir}/{f}\"))),\n"
        ));
    }
    out.push_str("];\n");
}

/// `dir`'s files as the constant `name` in `$OUT_DIR/file`.
fn embed_into(file: &str, dir: &str, ext: &str, name: &str) {
    let mut out = String::new();
    embed(dir, ext, name, &mut out);
    let dest = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join(file);
    fs::write(dest, out).expect("write an embedded file list");
}

fn main() {
    // the views belong to `db` (which applies them), the mappings to `mapping`
    embed_into("views.rs", "views", ".sql", "VIEWS");
    embed_into("mappings.rs", "vault/mappings", ".toml", "MAPPINGS");
    println!("cargo:rerun-if-changed=vault/schema");
}
