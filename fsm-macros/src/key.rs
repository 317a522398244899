//! The keys of the derive's attributes, typed: one enum per attribute, each variant declared once
//! with the name it is written as.
//!
//! The readers in `attr.rs` `match` on these enums with no wildcard arm, so a key added here
//! without its handler does not compile; and the list of known keys in the error of an unknown
//! one is generated from the same declaration, so it cannot drift from what is accepted.

use proc_macro2::Ident;

/// A key of one of the derive's attributes.
pub trait Key: Copy + PartialEq + 'static {
    /// The attribute the keys belong to, as written (`state_machine` for `#[state_machine(...)]`).
    const ATTRIBUTE: &'static str;
    /// Every key, in the order the error messages list them.
    const ALL: &'static [Self];

    /// The name the key is written as.
    fn name(self) -> &'static str;

    /// The key written as `ident`, if there is one (a raw identifier such as `r#from` is none).
    fn parse(ident: &Ident) -> Option<Self> {
        Self::ALL.iter().copied().find(|key| ident == key.name())
    }

    /// The names of all keys, each in backticks, comma separated, for error messages.
    fn known() -> String {
        Self::ALL.iter().map(|key| format!("`{}`", key.name())).collect::<Vec<_>>().join(", ")
    }
}

/// Declares a key enum, its variants with their names, and its [`Key`] impl: `ALL` lists every
/// variant and `name` matches them all, both generated from the one list.
macro_rules! keys {
    (
        $(#[$doc:meta])*
        $vis:vis enum $name:ident in $attribute:literal {
            $($(#[$variant_doc:meta])* $variant:ident = $key:literal,)+
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $($(#[$variant_doc])* $variant,)+
        }

        impl Key for $name {
            const ATTRIBUTE: &'static str = $attribute;
            const ALL: &'static [Self] = &[$(Self::$variant),+];

            fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $key,)+
                }
            }
        }
    };
}

keys! {
    /// A key of `#[state_machine(...)]`, on the enum.
    pub enum MachineKey in "state_machine" {
        /// `rename_all = "..."`: the case of the stored names of states and events.
        RenameAll = "rename_all",
        /// `event = Ident`: the name of the generated event enum.
        Event = "event",
        /// `name = "..."`: the machine's name.
        Name = "name",
        /// `table = "..."`: the entity table.
        Table = "table",
        /// `id = "..."`: the id column.
        Id = "id",
        /// `column = "..."`: the state column.
        Column = "column",
        /// `version = "..."`: the version column.
        Version = "version",
        /// `cyclic = [Event, ...]`: the events that lead, on purpose, to one of their sources.
        Cyclic = "cyclic",
    }
}

keys! {
    /// A key of `#[state(...)]`, on a variant.
    pub enum StateKey in "state" {
        /// `initial`: the state of a new entity.
        Initial = "initial",
        /// `terminal`: no transition leaves the state.
        Terminal = "terminal",
        /// `in_flight`: the state of an entity whose call to an outside service is under way.
        InFlight = "in_flight",
        /// `rename = "..."`: the stored name of the state.
        Rename = "rename",
    }
}

keys! {
    /// A key of `#[transition(...)]`, on a variant.
    pub enum TransitionKey in "transition" {
        /// `from = State` or `from = [A, B]`: the sources.
        From = "from",
        /// `on = Event`: the event.
        On = "on",
        /// `strict`: reaching the target through another request is an error.
        Strict = "strict",
    }
}

#[cfg(test)]
mod tests {
    use proc_macro2::Span;

    use super::*;

    /// Every key's name reads back as the key, and the names are distinct.
    fn round_trips<K: Key + std::fmt::Debug>() {
        for &key in K::ALL {
            let ident = Ident::new(key.name(), Span::call_site());
            assert_eq!(K::parse(&ident), Some(key), "{key:?}");
        }
        for (i, key) in K::ALL.iter().enumerate() {
            assert!(!K::ALL[..i].contains(key), "{key:?} listed twice");
            assert!(K::ALL[..i].iter().all(|other| other.name() != key.name()), "{} named twice", key.name());
        }
    }

    #[test]
    fn every_key_round_trips_through_its_name() {
        round_trips::<MachineKey>();
        round_trips::<StateKey>();
        round_trips::<TransitionKey>();
    }

    /// `ALL` holds every variant once, in the order of the declarations (the order of the lists
    /// in error messages).
    #[test]
    fn all_lists_every_variant_in_order() {
        use MachineKey::*;
        assert_eq!(MachineKey::ALL, [RenameAll, Event, Name, Table, Id, Column, Version, Cyclic]);
        assert_eq!(StateKey::ALL, [StateKey::Initial, StateKey::Terminal, StateKey::InFlight, StateKey::Rename]);
        assert_eq!(TransitionKey::ALL, [TransitionKey::From, TransitionKey::On, TransitionKey::Strict]);
    }

    #[test]
    fn unknown_names_are_none() {
        let ident = |name| Ident::new(name, Span::call_site());
        for name in ["events", "strict", "Event", "rename_All", "cyclical"] {
            assert_eq!(MachineKey::parse(&ident(name)), None, "{name}");
        }
        for name in ["final", "name", "from", "Initial", "inflight", "in_Flight", "InFlight"] {
            assert_eq!(StateKey::parse(&ident(name)), None, "{name}");
        }
        for name in ["to", "initial", "From"] {
            assert_eq!(TransitionKey::parse(&ident(name)), None, "{name}");
        }
        assert_eq!(TransitionKey::parse(&Ident::new_raw("from", Span::call_site())), None);
    }

    /// The lists in the errors of unknown keys, as the UI tests pin them.
    #[test]
    fn known_keys_are_the_names_of_the_variants() {
        assert_eq!(MachineKey::known(), "`rename_all`, `event`, `name`, `table`, `id`, `column`, `version`, `cyclic`");
        assert_eq!(StateKey::known(), "`initial`, `terminal`, `in_flight`, `rename`");
        assert_eq!(TransitionKey::known(), "`from`, `on`, `strict`");
        assert_eq!(
            (MachineKey::ATTRIBUTE, StateKey::ATTRIBUTE, TransitionKey::ATTRIBUTE),
            ("state_machine", "state", "transition")
        );
    }
}
