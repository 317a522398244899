//! Paths the generated code uses. Not a public API: it may change in any release.
//!
//! Every path that `#[derive(StateMachine)]` emits goes through this module
//! (`::fsm_runtime::__private::...`), so that the generated code neither depends on the user's
//! prelude nor on which names the user's scope shadows.

pub use core;

pub use crate::machine::{Edge, InvalidEvent, StateMachine, UnknownState};
pub use crate::mapping::TableMapping;
pub use crate::{__impl_state_codecs, __impl_state_serde};

/// The error of a stored name that no state maps to; out of line, to keep the generated
/// `from_stored` small.
#[cold]
pub fn unknown_state(machine: &'static str, value: &str, expected: &'static str) -> UnknownState {
    UnknownState { machine, value: value.to_owned(), expected }
}

/// Implements the optional codecs of a derived state (serde and sqlx, as the features of
/// `fsm-runtime` enable them), as its stored name.
#[doc(hidden)]
#[macro_export]
macro_rules! __impl_state_codecs {
    ($state:ty) => {
        $crate::__private::__impl_state_serde!($state);
    };
}

/// serde: serialise a state as its stored name, deserialise from it with a typed error.
#[cfg(feature = "serde")]
#[doc(hidden)]
#[macro_export]
macro_rules! __impl_state_serde {
    ($state:ty) => {
        impl $crate::__private::serde::Serialize for $state {
            fn serialize<S: $crate::__private::serde::Serializer>(
                &self,
                serializer: S,
            ) -> $crate::__private::core::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(<$state as $crate::__private::StateMachine>::as_str(*self))
            }
        }
        impl<'de> $crate::__private::serde::Deserialize<'de> for $state {
            fn deserialize<D: $crate::__private::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> $crate::__private::core::result::Result<Self, D::Error> {
                $crate::__private::deserialize_state::<$state, D>(deserializer)
            }
        }
    };
}

/// serde is off: nothing to implement.
#[cfg(not(feature = "serde"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __impl_state_serde {
    ($state:ty) => {};
}

#[cfg(feature = "serde")]
pub use serde;

/// Deserialises a state from its stored name.
#[cfg(feature = "serde")]
pub fn deserialize_state<'de, S: crate::StateMachine, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<S, D::Error> {
    struct Name<S>(core::marker::PhantomData<S>);
    impl<S: crate::StateMachine> serde::de::Visitor<'_> for Name<S> {
        type Value = S;
        fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "a state of {}", S::MACHINE)
        }
        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<S, E> {
            S::from_stored(value).map_err(E::custom)
        }
    }
    deserializer.deserialize_str(Name(core::marker::PhantomData))
}
