//! How a configuration key is described, and the macro that turns the table
//! of keys (`keys.rs`) into those descriptions.
//!
//! The table says each key once; this macro makes of it a typed handle per key
//! (the builder reads a value through it), and the list of sections the
//! parser checks the file against and the help prints.

use std::marker::PhantomData;

use super::kinds::{Kind, Unit};

/// A key as the parser and the help see it, whatever its type.
pub(crate) struct Spec {
    pub section: &'static str,
    pub name: &'static str,
    /// `section.name`, as errors name the key.
    pub path: &'static str,
    /// One line for the operator: what the key decides.
    pub doc: &'static str,
    pub default: KeyDefault,
    pub unit: Unit,
    /// Whether a reload (SIGHUP) puts a new value in force; otherwise a
    /// change waits for a restart ([`super::reload`]).
    pub reloadable: bool,
}

/// What a key is when the file leaves it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyDefault {
    /// Nothing: the operator must write it.
    Required,
    /// This TOML text, read and checked as if the operator had written it.
    Value(&'static str),
    /// Worked out from other keys (or from the system) by the code that
    /// builds the configuration; the text says how, for the help.
    Derived(&'static str),
}

/// A typed handle on one key: reading it gives a `K::Value`.
pub(crate) struct Key<K> {
    pub spec: Spec,
    kind: PhantomData<fn() -> K>,
}

impl<K: Kind> Key<K> {
    /// Used by [`define_keys`] only.
    pub(crate) const fn new(
        section: &'static str,
        name: &'static str,
        path: &'static str,
        doc: &'static str,
        default: KeyDefault,
        reloadable: bool,
    ) -> Key<K> {
        Key {
            spec: Spec {
                section,
                name,
                path,
                doc,
                default,
                unit: K::UNIT,
                reloadable,
            },
            kind: PhantomData,
        }
    }
}

/// A `[section]` of the file and its keys, in the order the help lists them.
pub(crate) struct Section {
    pub name: &'static str,
    pub doc: &'static str,
    pub keys: &'static [&'static Spec],
}

/// Declares every key: for each section a module holding one [`Key`]
/// constant per key (named as in the file), and `SECTIONS`, the list of them
/// all. A section is named as in the file, or written `module as
/// "outer.inner"` for a table inside another (`[storage.s3]`). A key is
/// written
///
/// ```text
/// /// one line for the operator
/// name: Kind = toml_value;          // optional, with this default
/// name: Kind;                       // required
/// name: Kind, derived "how";        // default worked out by the builder
/// @reload name: Kind = toml_value;  // any of these: SIGHUP reloads it
/// ```
macro_rules! define_keys {
    ($(
        $(#[doc = $section_doc:literal])*
        $section:ident $(as $file_name:literal)? {
            $(
                $(#[doc = $doc:literal])+
                $(@$reload:ident)? $name:ident: $kind:ty $(= $value:tt)? $(, derived $how:literal)?;
            )*
        }
    )*) => {
        $(
            define_keys!(@module [$($section_doc)*] $section [$($file_name)?] {
                $(
                    [$($doc)+] [$($reload)?] $name: $kind [$($value)?] [$($how)?];
                )*
            });
        )*

        /// Every section and key, in the order of the table.
        pub(crate) const SECTIONS: &[Section] = &[$(
            Section {
                name: define_keys!(@section $section [$($file_name)?]),
                doc: concat!($($section_doc),*),
                keys: &[$(&$section::$name.spec),*],
            }
        ),*];
    };
    (@module [$($section_doc:literal)*] $section:ident $file_name:tt {
        $(
            [$($doc:literal)+] [$($reload:ident)?] $name:ident: $kind:ty [$($value:tt)?] [$($how:literal)?];
        )*
    }) => {
        $(#[doc = $section_doc])*
        #[allow(non_upper_case_globals)]
        pub(crate) mod $section {
            use super::*;
            $(
                $(#[doc = $doc])+
                pub(crate) const $name: Key<$kind> = Key::new(
                    define_keys!(@section $section $file_name),
                    stringify!($name),
                    concat!(define_keys!(@section $section $file_name), ".", stringify!($name)),
                    concat!($($doc),+),
                    define_keys!(@default $($value)? $(, derived $how)?),
                    define_keys!(@reloadable $($reload)?),
                );
            )*
        }
    };
    (@section $section:ident []) => { stringify!($section) };
    (@section $section:ident [$file_name:literal]) => { $file_name };
    (@default) => { KeyDefault::Required };
    (@default $value:tt) => { KeyDefault::Value(stringify!($value)) };
    (@default , derived $how:literal) => { KeyDefault::Derived($how) };
    (@reloadable) => { false };
    (@reloadable reload) => { true };
}

pub(crate) use define_keys;
