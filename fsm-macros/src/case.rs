//! `rename_all`: the case conventions of serde, applied to variant names the way serde does.

/// A case convention accepted by `#[state_machine(rename_all = "...")]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameRule {
    /// `lowercase`: `InTransit` -> `intransit`.
    Lower,
    /// `UPPERCASE`: `InTransit` -> `INTRANSIT`.
    Upper,
    /// `PascalCase`: variant names already are, so unchanged.
    Pascal,
    /// `camelCase`: `InTransit` -> `inTransit`.
    Camel,
    /// `snake_case`: `InTransit` -> `in_transit`.
    Snake,
    /// `SCREAMING_SNAKE_CASE`: `InTransit` -> `IN_TRANSIT`.
    ScreamingSnake,
    /// `kebab-case`: `InTransit` -> `in-transit`.
    Kebab,
    /// `SCREAMING-KEBAB-CASE`: `InTransit` -> `IN-TRANSIT`.
    ScreamingKebab,
}

impl RenameRule {
    /// Every rule with the name it is written as, in serde's order.
    pub const ALL: [(&'static str, RenameRule); 8] = [
        ("lowercase", RenameRule::Lower),
        ("UPPERCASE", RenameRule::Upper),
        ("PascalCase", RenameRule::Pascal),
        ("camelCase", RenameRule::Camel),
        ("snake_case", RenameRule::Snake),
        ("SCREAMING_SNAKE_CASE", RenameRule::ScreamingSnake),
        ("kebab-case", RenameRule::Kebab),
        ("SCREAMING-KEBAB-CASE", RenameRule::ScreamingKebab),
    ];

    /// The rule written as `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(candidate, _)| *candidate == name).map(|(_, rule)| *rule)
    }

    /// The names of all rules, quoted and comma separated, for error messages.
    pub fn names() -> String {
        Self::ALL.iter().map(|(name, _)| format!("\"{name}\"")).collect::<Vec<_>>().join(", ")
    }

    /// Applies the rule to a variant name written in PascalCase.
    pub fn apply(self, variant: &str) -> String {
        match self {
            RenameRule::Pascal => variant.to_owned(),
            RenameRule::Lower => variant.to_ascii_lowercase(),
            RenameRule::Upper => variant.to_ascii_uppercase(),
            RenameRule::Camel => {
                let mut chars = variant.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => String::new(),
                }
            }
            RenameRule::Snake => snake_case(variant),
            RenameRule::ScreamingSnake => snake_case(variant).to_ascii_uppercase(),
            RenameRule::Kebab => snake_case(variant).replace('_', "-"),
            RenameRule::ScreamingKebab => snake_case(variant).to_ascii_uppercase().replace('_', "-"),
        }
    }
}

/// serde's `snake_case`: an `_` before every upper-case letter but the first, then lower case.
pub fn snake_case(name: &str) -> String {
    let mut snake = String::with_capacity(name.len() + 4);
    for (i, ch) in name.char_indices() {
        if i > 0 && ch.is_uppercase() {
            snake.push('_');
        }
        snake.push(ch.to_ascii_lowercase());
    }
    snake
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(rule: &str, variant: &str) -> String {
        RenameRule::from_name(rule).expect("a known rule").apply(variant)
    }

    #[test]
    fn every_rule_as_serde_applies_it() {
        let cases = [
            ("lowercase", "intransit"),
            ("UPPERCASE", "INTRANSIT"),
            ("PascalCase", "InTransit"),
            ("camelCase", "inTransit"),
            ("snake_case", "in_transit"),
            ("SCREAMING_SNAKE_CASE", "IN_TRANSIT"),
            ("kebab-case", "in-transit"),
            ("SCREAMING-KEBAB-CASE", "IN-TRANSIT"),
        ];
        for (rule, expected) in cases {
            assert_eq!(apply(rule, "InTransit"), expected, "{rule}");
        }
    }

    #[test]
    fn single_words_and_acronyms() {
        assert_eq!(apply("snake_case", "Paid"), "paid");
        assert_eq!(apply("camelCase", "Paid"), "paid");
        // serde splits every upper-case letter, acronyms included.
        assert_eq!(apply("snake_case", "HTTPError"), "h_t_t_p_error");
        assert_eq!(apply("kebab-case", "A"), "a");
        assert_eq!(apply("camelCase", ""), "");
    }

    #[test]
    fn snake_case_of_a_type_name() {
        assert_eq!(snake_case("OrderState"), "order_state");
        assert_eq!(snake_case("Order"), "order");
        assert_eq!(snake_case("V2Order"), "v2_order");
    }

    #[test]
    fn unknown_names_are_rejected() {
        assert_eq!(RenameRule::from_name("snake-case"), None);
        assert_eq!(RenameRule::from_name("Lowercase"), None);
        assert_eq!(RenameRule::from_name(""), None);
        assert!(RenameRule::names().starts_with("\"lowercase\", \"UPPERCASE\""));
    }
}
