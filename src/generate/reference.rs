//! Reference data: where customers live, what they are called, what the shop
//! sells; and the values made from it (emails, phone numbers, product names,
//! prices).

use rand::RngExt;
use rand::rngs::StdRng;

pub(super) struct Country {
    pub(super) name: &'static str,
    dial_code: &'static str,
    /// Relative share of customers living there.
    pub(super) weight: u32,
    pub(super) cities: &'static [&'static str],
}

const fn country(
    name: &'static str,
    dial_code: &'static str,
    weight: u32,
    cities: &'static [&'static str],
) -> Country {
    Country {
        name,
        dial_code,
        weight,
        cities,
    }
}

#[rustfmt::skip]
pub(super) const COUNTRIES: &[Country] = &[
    country("Germany", "+49", 18, &["Berlin", "Hamburg", "München", "Köln"]),
    country("France", "+33", 12, &["Paris", "Lyon", "Marseille", "Toulouse"]),
    country("Spain", "+34", 10, &["Madrid", "Barcelona", "Sevilla", "Valencia"]),
    country("Italy", "+39", 9, &["Roma", "Milano", "Napoli", "Torino"]),
    country("Poland", "+48", 8, &["Warszawa", "Kraków", "Łódź", "Gdańsk"]),
    country("Netherlands", "+31", 7, &["Amsterdam", "Rotterdam", "Utrecht"]),
    country("Sweden", "+46", 5, &["Stockholm", "Göteborg", "Malmö"]),
    country("United Kingdom", "+44", 12, &["London", "Manchester", "Edinburgh"]),
    country("United States", "+1", 14, &["New York", "Chicago", "San Francisco", "Austin"]),
    country("Brazil", "+55", 5, &["São Paulo", "Rio de Janeiro", "Curitiba"]),
];

#[rustfmt::skip]
pub(super) const FIRST_NAMES: &[&str] = &[
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas",
    "Katarzyna", "Liam", "Maria", "Noah", "Olivia", "Paul", "Sofia", "Tom", "Lena", "Marco",
    "Sara", "Lucas", "Julia", "Erik", "José", "Zoë", "Łukasz", "Søren", "Chloé", "Björn",
];

#[rustfmt::skip]
pub(super) const LAST_NAMES: &[&str] = &[
    "Smith", "Schmidt", "Martin", "Rossi", "Nowak", "de Jong", "Johansson", "Brown", "Silva",
    "García", "Müller", "Dubois", "Bianchi", "Kowalski", "Jansen", "Andersson", "Taylor",
    "Santos", "Fernández", "Weber", "Lefèvre", "Wiśniewski", "O'Brien", "Meyer", "Costa",
    "Larsen", "Moreau", "Romano", "Becker", "Novak",
];

pub(super) const EMAIL_DOMAINS: &[&str] = &[
    "example.com",
    "mail.example",
    "inbox.example",
    "example.org",
];

pub(super) struct Category {
    pub(super) name: &'static str,
    nouns: &'static [&'static str],
    /// Price range in whole currency units.
    pub(super) price: (i64, i64),
}

const fn category(
    name: &'static str,
    nouns: &'static [&'static str],
    price: (i64, i64),
) -> Category {
    Category { name, nouns, price }
}

#[rustfmt::skip]
pub(super) const CATEGORIES: &[Category] = &[
    category("Electronics", &["Headphones", "Speaker", "Charger", "Keyboard", "Monitor", "Webcam"], (15, 400)),
    category("Home", &["Lamp", "Cushion", "Rug", "Curtain", "Mirror", "Vase"], (8, 150)),
    category("Kitchen", &["Blender", "Kettle", "Pan", "Knife Set", "Toaster", "Coffee Grinder"], (10, 200)),
    category("Books", &["Novel", "Cookbook", "Travel Guide", "Biography", "Atlas"], (6, 45)),
    category("Toys", &["Puzzle", "Board Game", "Building Set", "Plush Bear", "Kite"], (5, 80)),
    category("Sports", &["Yoga Mat", "Running Shoes", "Dumbbell Set", "Water Bottle", "Tennis Racket"], (8, 180)),
    category("Beauty", &["Face Cream", "Shampoo", "Perfume", "Lip Balm"], (4, 90)),
    category("Garden", &["Hose", "Planter", "Pruning Shears", "Bird Feeder"], (6, 120)),
];

#[rustfmt::skip]
const ADJECTIVES: &[&str] = &[
    "Classic", "Compact", "Deluxe", "Eco", "Smart", "Premium", "Nordic", "Urban", "Vintage",
    "Essential", "Ultra", "Pro",
];

#[rustfmt::skip]
pub(super) const BRANDS: &[&str] = &[
    "Acme", "Nordlys", "Brühl & Söhne", "Casa Bella", "Zenith", "Sol y Mar", "Polar", "Vértice",
    "Oakridge", "Lumière", "Trekka", "Fjällgård",
];

/// A plausible shop price in cents: mostly `x.99`, some `x.49` and round ones.
pub(super) fn shop_price(rng: &mut StdRng, units: i64) -> i64 {
    let units = units.max(1);
    match rng.random_range(0..10) {
        0..7 => units * 100 - 1,
        7..9 => units * 100 - 51,
        _ => units * 100,
    }
    .max(99)
}

/// `Classic Lamp 123`: an adjective, a noun that fits `category`, a model number.
pub(super) fn product_name(rng: &mut StdRng, category: usize) -> String {
    let nouns = CATEGORIES[category].nouns;
    format!(
        "{} {} {}",
        ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
        nouns[rng.random_range(0..nouns.len())],
        rng.random_range(100..1000)
    )
}

/// `first.last.42@example.com`, unique by the customer's 0-based index.
pub(super) fn email_address(first: &str, last: &str, customer: usize, domain: usize) -> String {
    let mut email = String::with_capacity(40);
    ascii_fold(first, &mut email);
    email.push('.');
    ascii_fold(last, &mut email);
    email.push_str(&format!(".{}@{}", customer + 1, EMAIL_DOMAINS[domain]));
    email
}

/// `+49 151 0123456`, with the dial code of `country`.
pub(super) fn phone_number(rng: &mut StdRng, country: usize) -> String {
    format!(
        "{} {} {:07}",
        COUNTRIES[country].dial_code,
        rng.random_range(100..1000),
        rng.random_range(0..10_000_000)
    )
}

/// Lower-case ASCII for an email address: accents dropped, `ł` → `l`, `ß` → `ss`,
/// anything but letters and digits removed.
fn ascii_fold(name: &str, out: &mut String) {
    for c in name.chars().flat_map(char::to_lowercase) {
        let folded = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
            'ç' => 'c',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ł' => 'l',
            'ñ' | 'ń' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => 'o',
            'ś' => 's',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ź' | 'ż' => 'z',
            'ß' => {
                out.push_str("ss");
                continue;
            }
            c if c.is_ascii_alphanumeric() => c,
            _ => continue,
        };
        out.push(folded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fold_to_ascii() {
        let mut folded = String::new();
        ascii_fold("Łukasz Zoë O'Brien-Müller Søren Weiß", &mut folded);
        assert_eq!(folded, "lukaszzoeobrienmullersorenweiss");
    }
}
