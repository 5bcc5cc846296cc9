//! Paging parameters without a database: defaults and limits, cursors that
//! round-trip and are checked, and next links.

use super::*;

static SORTS: [Sort; 2] = [
    Sort::new("id", "t.id", "text", false),
    Sort::new("-total", "t.total", "numeric", true),
];

fn parse(p: Paging<'_>) -> Result<PageRequest, ApiError> {
    PageRequest::parse(&SORTS, p)
}

fn detail(r: Result<PageRequest, ApiError>) -> String {
    r.expect_err("refused").problem().detail
}

#[test]
fn defaults_and_limits() {
    let p = parse(Paging::default()).expect("ok");
    assert_eq!((p.sort.name, p.limit, p.offset), ("id", DEFAULT_LIMIT, 0));
    let p = parse(Paging {
        limit: Some("1000"),
        skip: Some("20"),
        ..Paging::default()
    })
    .expect("ok");
    assert_eq!((p.limit, p.offset), (1000, 20));
    for bad in ["0", "1001", "-1", "ten", ""] {
        let d = detail(parse(Paging {
            limit: Some(bad),
            ..Paging::default()
        }));
        assert!(d.starts_with("parameter `limit`"), "{d}");
    }
    let d = detail(parse(Paging {
        sort: Some("price"),
        ..Paging::default()
    }));
    assert_eq!(
        d,
        "parameter `sort`: unknown sort \"price\"; allowed: id, -total"
    );
}

#[test]
fn cursors_round_trip_and_are_checked() {
    let c = Cursor {
        s: "-total".into(),
        k: "12.50".into(),
        i: "C 1/é".into(),
    };
    let raw = c.encode();
    assert!(
        raw.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let p = parse(Paging {
        sort: Some("-total"),
        cursor: Some(&raw),
        ..Paging::default()
    })
    .expect("ok");
    assert_eq!(p.after, Some(c));

    let d = detail(parse(Paging {
        cursor: Some(&raw),
        ..Paging::default()
    }));
    assert!(d.contains("belongs to sort=-total"), "{d}");
    let d = detail(parse(Paging {
        cursor: Some("not-a-cursor"),
        ..Paging::default()
    }));
    assert!(d.starts_with("parameter `cursor`"), "{d}");
    let d = detail(parse(Paging {
        sort: Some("-total"),
        cursor: Some(&raw),
        offset: Some("5"),
        ..Paging::default()
    }));
    assert!(d.contains("not both"), "{d}");
}

#[test]
fn next_links_keep_filters_and_drop_paging() {
    let link = next_link(
        "/customers",
        &[
            ("segment", Some("Can't Lose Them")),
            ("country", None),
            ("limit", Some("10")),
            ("skip", Some("20")),
        ],
        "abc",
    );
    assert_eq!(
        link,
        "/customers?segment=Can%27t%20Lose%20Them&limit=10&cursor=abc"
    );
    assert_eq!(next_link("/orders", &[], "x"), "/orders?cursor=x");
}
