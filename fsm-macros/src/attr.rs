//! Reading the derive's attributes, `#[state_machine(...)]`, `#[state(...)]` and
//! `#[transition(...)]`, key by key (the keys are typed, in `key.rs`).
//!
//! Every problem is pushed to [`Errors`] and reading goes on with the next key: an unknown or
//! duplicate key is reported and its value skipped; a malformed value ends the attribute.

use proc_macro2::{Ident, Span, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::{Attribute, LitStr, Token};

use crate::case::RenameRule;
use crate::errors::Errors;
use crate::key::{Key, MachineKey, StateKey, TransitionKey};
use crate::model::Transition;

/// The keys of `#[state_machine(...)]`, as read.
#[derive(Default)]
pub struct MachineAttrs {
    /// `rename_all = "..."`, when the rule is known.
    pub rename_all: Option<RenameRule>,
    /// `event = Ident`.
    pub event: Option<Ident>,
    /// `name = "..."`.
    pub name: Option<String>,
    /// `table = "..."`, with the span of the literal.
    pub table: Option<(String, Span)>,
    /// `id = "..."`, with the span of the literal.
    pub id: Option<(String, Span)>,
    /// `column = "..."`, with the span of the literal.
    pub column: Option<(String, Span)>,
    /// `version = "..."`, with the span of the literal.
    pub version: Option<(String, Span)>,
    /// `cyclic = [Event, ...]`.
    pub cyclic: Vec<Ident>,
    /// Whether an attribute could not be read in full.
    pub partial: bool,
}

/// Reads every `#[state_machine(...)]` attribute of the enum; a key may be given once in all.
pub fn machine_attrs(attrs: &[Attribute], errors: &mut Errors) -> MachineAttrs {
    let mut out = MachineAttrs::default();
    let mut seen = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(MachineKey::ATTRIBUTE)) {
        let result = attr.parse_nested_meta(|meta| match next_key(&meta, &mut seen, errors)? {
            Some(key) => out.set(key, &meta, errors),
            None => Ok(()),
        });
        if let Err(error) = result {
            out.partial = true;
            errors.push(error);
        }
    }
    out
}

impl MachineAttrs {
    /// Reads the value of `key`.
    fn set(&mut self, key: MachineKey, meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<()> {
        match key {
            MachineKey::RenameAll => self.rename_all = rename_rule(meta, errors)?,
            MachineKey::Event => self.event = Some(bare_ident(meta.value()?)?),
            MachineKey::Name => self.name = Some(meta.value()?.parse::<LitStr>()?.value()),
            MachineKey::Table => self.table = Some(string(meta)?),
            MachineKey::Id => self.id = Some(string(meta)?),
            MachineKey::Column => self.column = Some(string(meta)?),
            MachineKey::Version => self.version = Some(string(meta)?),
            MachineKey::Cyclic => self.cyclic = ident_list(meta.value()?)?,
        }
        Ok(())
    }
}

/// `rename_all = "..."`: the rule, or `None` when it is unknown (reported, reading goes on).
fn rename_rule(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Option<RenameRule>> {
    let lit: LitStr = meta.value()?.parse()?;
    let rule = RenameRule::from_name(&lit.value());
    if rule.is_none() {
        errors.at(
            lit.span(),
            format!("unknown `rename_all` rule \"{}\"; expected one of: {}", lit.value(), RenameRule::names()),
        );
    }
    Ok(rule)
}

/// The keys of a variant's `#[state(...)]` attributes, as read.
#[derive(Default)]
pub struct StateAttrs {
    /// The `initial` keyword, when given.
    pub initial: Option<Span>,
    /// The `terminal` keyword, when given.
    pub terminal: Option<Span>,
    /// The `in_flight` keyword, when given.
    pub in_flight: Option<Span>,
    /// `rename = "..."`.
    pub rename: Option<LitStr>,
    /// The keys read so far, across all of the variant's `#[state(...)]` attributes.
    seen: Vec<StateKey>,
}

impl StateAttrs {
    /// Reads one `#[state(...)]` attribute of the variant into `self`.
    pub fn read(&mut self, attr: &Attribute, errors: &mut Errors) {
        let result = attr.parse_nested_meta(|meta| match next_key(&meta, &mut self.seen, errors)? {
            Some(key) => self.set(key, &meta),
            None => Ok(()),
        });
        if let Err(error) = result {
            errors.push(error);
        }
    }

    /// Reads `key` (and its value, for `rename`).
    fn set(&mut self, key: StateKey, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        let span = meta.path.get_ident().map_or_else(Span::call_site, Ident::span);
        match key {
            StateKey::Initial => self.initial = Some(span),
            StateKey::Terminal => self.terminal = Some(span),
            StateKey::InFlight => self.in_flight = Some(span),
            StateKey::Rename => self.rename = Some(meta.value()?.parse()?),
        }
        Ok(())
    }
}

/// One `#[transition(...)]` attribute, as read.
pub struct TransitionAttr {
    /// The transition, when its sources could be read.
    pub transition: Option<Transition>,
    /// Whether the attribute was read in full, sources included.
    pub complete: bool,
}

/// The keys of one `#[transition(...)]`, as read so far.
#[derive(Default)]
struct TransitionKeys {
    from: Option<Vec<Ident>>,
    on: Option<Ident>,
    strict: bool,
    seen: Vec<TransitionKey>,
}

/// Reads one `#[transition(...)]` attribute; `declared` ("the states of `Order` are: ...")
/// completes the error of an empty `from`.
pub fn transition_attr(attr: &Attribute, declared: &str, errors: &mut Errors) -> TransitionAttr {
    let mut keys = TransitionKeys::default();
    let result = attr.parse_nested_meta(|meta| match next_key(&meta, &mut keys.seen, errors)? {
        Some(key) => keys.set(key, &meta, declared),
        None => Ok(()),
    });
    let failed = result.is_err();
    if let Err(error) = result {
        errors.push(error);
    }
    if keys.from.is_none() && !failed {
        errors.push(syn::Error::new_spanned(
            attr,
            "a transition needs its sources: `#[transition(from = State)]` or \
             `#[transition(from = [A, B], on = Event)]`",
        ));
    }
    let complete = !failed && keys.from.is_some();
    let transition = keys.from.map(|from| Transition { from, on: keys.on, strict: keys.strict });
    TransitionAttr { transition, complete }
}

impl TransitionKeys {
    /// Reads `key` and its value.
    fn set(&mut self, key: TransitionKey, meta: &ParseNestedMeta<'_>, declared: &str) -> syn::Result<()> {
        match key {
            TransitionKey::From => {
                let list = ident_list(meta.value()?)?;
                if list.is_empty() {
                    return Err(meta.error(format!("`from` needs at least one state; {declared}")));
                }
                self.from = Some(list);
            }
            TransitionKey::On => self.on = Some(bare_ident(meta.value()?)?),
            TransitionKey::Strict => self.strict = true,
        }
        Ok(())
    }
}

/// The key of `meta`, when it is one of `K` and its first use in `seen`; otherwise reports it
/// (unknown or duplicate), skips its value and gives `None`.
fn next_key<K: Key>(meta: &ParseNestedMeta<'_>, seen: &mut Vec<K>, errors: &mut Errors) -> syn::Result<Option<K>> {
    let Some(key) = meta.path.get_ident().and_then(K::parse) else {
        let written = meta.path.to_token_stream().to_string().replace(' ', "");
        let message =
            format!("unknown key `{written}` in `#[{}(...)]`; the known keys are: {}", K::ATTRIBUTE, K::known());
        errors.push(syn::Error::new_spanned(&meta.path, message));
        skip_value(meta.input)?;
        return Ok(None);
    };
    if seen.contains(&key) {
        errors.push(syn::Error::new_spanned(&meta.path, format!("duplicate key `{}`", key.name())));
        skip_value(meta.input)?;
        return Ok(None);
    }
    seen.push(key);
    Ok(Some(key))
}

/// Skips the value of a key (`= ...` or `(...)`) up to the next `,`.
fn skip_value(input: ParseStream<'_>) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// `key = "string"`, with the span of the literal.
fn string(meta: &ParseNestedMeta<'_>) -> syn::Result<(String, Span)> {
    let lit: LitStr = meta.value()?.parse()?;
    Ok((lit.value(), lit.span()))
}

/// `Ident` or `[Ident, Ident, ...]`.
fn ident_list(input: ParseStream<'_>) -> syn::Result<Vec<Ident>> {
    if input.peek(syn::token::Bracket) {
        let content;
        syn::bracketed!(content in input);
        let list = Punctuated::<Ident, Token![,]>::parse_terminated_with(&content, bare_ident)?;
        Ok(list.into_iter().collect())
    } else {
        Ok(vec![bare_ident(input)?])
    }
}

/// A name written as an identifier, with a hint when it was written as a string.
fn bare_ident(input: ParseStream<'_>) -> syn::Result<Ident> {
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        let message = format!("expected a name, written as an identifier: `{0}`, not `\"{0}\"`", lit.value());
        return Err(syn::Error::new(lit.span(), message));
    }
    input.parse()
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    /// Every key of `#[state_machine(...)]` lands in its own field.
    #[test]
    fn every_machine_key_is_read_into_its_field() {
        let attrs: Vec<Attribute> = parse_quote! {
            #[state_machine(rename_all = "kebab-case", event = Step, name = "flow", table = "t")]
            #[state_machine(id = "i", column = "c", version = "v", cyclic = [Retry, Reset])]
        };
        let mut errors = Errors::default();
        let read = machine_attrs(&attrs, &mut errors);
        assert!(errors.is_empty(), "{:?}", errors.messages());
        assert_eq!(read.rename_all, Some(RenameRule::Kebab));
        assert!(read.event.is_some_and(|event| event == "Step"));
        assert_eq!(read.name.as_deref(), Some("flow"));
        let sql = [read.table, read.id, read.column, read.version].map(|given| given.map(|(value, _)| value));
        assert_eq!(sql, [Some("t"), Some("i"), Some("c"), Some("v")].map(|value| value.map(str::to_owned)));
        assert_eq!(read.cyclic, ["Retry", "Reset"]);
        assert!(!read.partial);
    }

    /// Unknown and duplicate keys are reported, their values skipped, and the other keys read.
    #[test]
    fn unknown_and_duplicate_keys_are_skipped() {
        let attrs: Vec<Attribute> = parse_quote! {
            #[state_machine(colour = [red, green], table = "a", name = "n")]
            #[state_machine(table = "b", cyclic = Retry)]
        };
        let mut errors = Errors::default();
        let read = machine_attrs(&attrs, &mut errors);
        assert_eq!(
            errors.messages(),
            [
                "unknown key `colour` in `#[state_machine(...)]`; the known keys are: `rename_all`, `event`, \
                 `name`, `table`, `id`, `column`, `version`, `cyclic`",
                "duplicate key `table`",
            ]
        );
        assert_eq!(read.table.map(|(value, _)| value).as_deref(), Some("a"));
        assert_eq!(read.name.as_deref(), Some("n"));
        assert_eq!(read.cyclic, ["Retry"]);
        assert!(!read.partial);
    }

    /// The keys of `#[state(...)]` are unique across all the attributes of a variant.
    #[test]
    fn state_keys_are_read_across_attributes() {
        let attrs: Vec<Attribute> = parse_quote! {
            #[state(initial, in_flight)]
            #[state(rename = "x", initial, terminal, in_flight)]
        };
        let mut errors = Errors::default();
        let mut read = StateAttrs::default();
        for attr in &attrs {
            read.read(attr, &mut errors);
        }
        assert_eq!(errors.messages(), ["duplicate key `initial`", "duplicate key `in_flight`"]);
        assert!(read.initial.is_some() && read.terminal.is_some() && read.in_flight.is_some());
        assert_eq!(read.rename.map(|lit| lit.value()).as_deref(), Some("x"));
    }

    fn transition(attr: Attribute) -> (TransitionAttr, Vec<String>) {
        let mut errors = Errors::default();
        let read = transition_attr(&attr, "the states are: `A`", &mut errors);
        (read, errors.messages())
    }

    #[test]
    fn a_transition_reads_its_keys() {
        let (read, messages) = transition(parse_quote!(#[transition(strict, on = Go, from = [A, B])]));
        assert!(messages.is_empty(), "{messages:?}");
        assert!(read.complete);
        let transition = read.transition.expect("a transition");
        assert_eq!(transition.from, ["A", "B"]);
        assert!(transition.on.is_some_and(|on| on == "Go"));
        assert!(transition.strict);
    }

    #[test]
    fn a_transition_without_sources_is_reported_once() {
        let (read, messages) = transition(parse_quote!(#[transition(on = Go)]));
        assert!(read.transition.is_none() && !read.complete);
        assert_eq!(messages.len(), 1);
        assert!(messages[0].starts_with("a transition needs its sources"), "{messages:?}");

        let (read, messages) = transition(parse_quote!(#[transition(from = [], on = Go)]));
        assert!(read.transition.is_none() && !read.complete);
        assert_eq!(messages, ["`from` needs at least one state; the states are: `A`"]);

        let (read, messages) = transition(parse_quote!(#[transition(from = A, on = "Go")]));
        assert!(read.transition.is_some_and(|transition| transition.on.is_none()) && !read.complete);
        assert_eq!(messages, ["expected a name, written as an identifier: `Go`, not `\"Go\"`"]);
    }
}
