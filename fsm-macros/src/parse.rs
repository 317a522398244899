//! Reading the derive input and its attributes into a [`Machine`].
//!
//! Every problem is pushed to [`Errors`] and reading goes on, so that one compilation reports all
//! of them; the structural checks of the machine itself are in `validate.rs`.

use proc_macro2::{Ident, Span, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::{Attribute, Data, DeriveInput, Fields, LitStr, Token};

use crate::case::{RenameRule, snake_case};
use crate::errors::Errors;
use crate::model::{Event, Machine, Mapping, SqlName, State, Transition, join};

/// The keys of `#[state_machine(...)]`.
const MACHINE_KEYS: &[&str] = &["rename_all", "event", "name", "table", "id", "column", "version", "cyclic"];
/// The keys of `#[state(...)]`.
const STATE_KEYS: &[&str] = &["initial", "terminal", "rename"];
/// The keys of `#[transition(...)]`.
const TRANSITION_KEYS: &[&str] = &["from", "on", "strict"];

/// What `#[derive(StateMachine)]` accepts, for error messages.
const ONLY_UNIT_ENUMS: &str = "`#[derive(StateMachine)]` only supports enums whose variants are unit variants \
                               (the states)";

/// Reads the derive input. `None` when it is not an enum: there is nothing more to check or emit.
pub fn machine(input: &DeriveInput, errors: &mut Errors) -> Option<Machine> {
    let attrs = machine_attrs(&input.attrs, errors);
    let data = match &input.data {
        Data::Enum(data) => data,
        Data::Struct(data) => {
            errors.push(syn::Error::new(data.struct_token.span, format!("{ONLY_UNIT_ENUMS}, not structs")));
            return None;
        }
        Data::Union(data) => {
            errors.push(syn::Error::new(data.union_token.span, format!("{ONLY_UNIT_ENUMS}, not unions")));
            return None;
        }
    };

    let generics = &input.generics;
    let generic = !generics.params.is_empty() || generics.where_clause.is_some();
    if generic {
        let message = "a state machine cannot be generic: its states are plain unit variants, stored by name";
        if generics.params.is_empty() {
            errors.push(syn::Error::new_spanned(&generics.where_clause, message));
        } else {
            errors.push(syn::Error::new_spanned(generics, message));
        }
    }

    let rule = attrs.rename_all;
    let declared = format!(
        "the states of `{}` are: {}",
        input.ident,
        join(data.variants.iter().map(|variant| format!("`{}`", variant.ident)))
    );
    let mut states = Vec::with_capacity(data.variants.len());
    for variant in &data.variants {
        if !matches!(variant.fields, Fields::Unit) {
            errors.push(syn::Error::new_spanned(
                &variant.fields,
                format!(
                    "state `{}` has fields: the states of a machine are unit variants, stored by name",
                    variant.ident
                ),
            ));
        }
        let state = state(&variant.ident, &variant.attrs, rule, &declared, errors);
        states.push(state);
    }

    let mut events: Vec<Event> = Vec::new();
    for transition in states.iter().flat_map(|state| &state.transitions) {
        if let Some(on) = &transition.on
            && !events.iter().any(|event| event.ident == *on)
        {
            events.push(Event { ident: on.clone(), stored: stored_name(on, rule) });
        }
    }

    let ident = &input.ident;
    let bare = ident.unraw().to_string();
    let span = ident.span();
    let sql = |role, given: Option<(String, Span)>, default: String| match given {
        Some((value, span)) => SqlName { role, value, span, explicit: true },
        None => SqlName { role, value: default, span, explicit: false },
    };
    Some(Machine {
        ident: ident.clone(),
        vis: input.vis.to_token_stream(),
        generic,
        partial: attrs.partial,
        event: attrs.event.unwrap_or_else(|| Ident::new(&format!("{bare}Event"), span)),
        name: attrs.name.unwrap_or_else(|| bare.clone()),
        mapping: Mapping {
            table: sql("table", attrs.table, snake_case(&bare)),
            id: sql("id column", attrs.id, "id".to_owned()),
            state: sql("state column", attrs.column, "state".to_owned()),
            version: sql("version column", attrs.version, "version".to_owned()),
        },
        cyclic: attrs.cyclic,
        states,
        events,
    })
}

/// The keys of `#[state_machine(...)]`, as read.
#[derive(Default)]
struct MachineAttrs {
    rename_all: Option<RenameRule>,
    event: Option<Ident>,
    name: Option<String>,
    table: Option<(String, Span)>,
    id: Option<(String, Span)>,
    column: Option<(String, Span)>,
    version: Option<(String, Span)>,
    cyclic: Vec<Ident>,
    /// Whether an attribute could not be read in full.
    partial: bool,
}

/// Reads every `#[state_machine(...)]` attribute of the enum.
fn machine_attrs(attrs: &[Attribute], errors: &mut Errors) -> MachineAttrs {
    let mut out = MachineAttrs::default();
    let mut seen = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("state_machine")) {
        let result = attr.parse_nested_meta(|meta| {
            let Some(key) = known_key(&meta, "state_machine", MACHINE_KEYS, errors)? else {
                return Ok(());
            };
            if !first_use(&meta, key, &mut seen, errors) {
                return skip_value(meta.input);
            }
            match key {
                "rename_all" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    match RenameRule::from_name(&lit.value()) {
                        Some(rule) => out.rename_all = Some(rule),
                        None => errors.at(
                            lit.span(),
                            format!(
                                "unknown `rename_all` rule \"{}\"; expected one of: {}",
                                lit.value(),
                                RenameRule::names()
                            ),
                        ),
                    }
                }
                "event" => out.event = Some(bare_ident(meta.value()?)?),
                "name" => out.name = Some(meta.value()?.parse::<LitStr>()?.value()),
                "table" => out.table = Some(string(&meta)?),
                "id" => out.id = Some(string(&meta)?),
                "column" => out.column = Some(string(&meta)?),
                "version" => out.version = Some(string(&meta)?),
                _ => out.cyclic = ident_list(meta.value()?)?,
            }
            Ok(())
        });
        if let Err(error) = result {
            out.partial = true;
            errors.push(error);
        }
    }
    out
}

/// Reads one variant and its `#[state(...)]` and `#[transition(...)]` attributes; `declared`
/// ("the states of `Order` are: ...") completes the error of an empty `from`.
fn state(ident: &Ident, attrs: &[Attribute], rule: Option<RenameRule>, declared: &str, errors: &mut Errors) -> State {
    let mut initial = None;
    let mut terminal = None;
    let mut rename: Option<LitStr> = None;
    let mut transitions = Vec::new();
    let mut unread_transition = false;
    let mut seen = Vec::new();
    for attr in attrs {
        if attr.path().is_ident("state") {
            let result = attr.parse_nested_meta(|meta| {
                let Some(key) = known_key(&meta, "state", STATE_KEYS, errors)? else {
                    return Ok(());
                };
                if !first_use(&meta, key, &mut seen, errors) {
                    return skip_value(meta.input);
                }
                let span = meta.path.get_ident().map_or_else(Span::call_site, Ident::span);
                match key {
                    "initial" => initial = Some(span),
                    "terminal" => terminal = Some(span),
                    _ => rename = Some(meta.value()?.parse()?),
                }
                Ok(())
            });
            if let Err(error) = result {
                errors.push(error);
            }
        } else if attr.path().is_ident("transition") {
            let mut from = None;
            let mut on = None;
            let mut strict = false;
            let mut seen = Vec::new();
            let result = attr.parse_nested_meta(|meta| {
                let Some(key) = known_key(&meta, "transition", TRANSITION_KEYS, errors)? else {
                    return Ok(());
                };
                if !first_use(&meta, key, &mut seen, errors) {
                    return skip_value(meta.input);
                }
                if key == "strict" {
                    strict = true;
                } else if key == "from" {
                    let list = ident_list(meta.value()?)?;
                    if list.is_empty() {
                        return Err(meta.error(format!("`from` needs at least one state; {declared}")));
                    }
                    from = Some(list);
                } else {
                    on = Some(bare_ident(meta.value()?)?);
                }
                Ok(())
            });
            let failed = result.is_err();
            if let Err(error) = result {
                errors.push(error);
            }
            let missing = from.is_none();
            match from {
                Some(from) => transitions.push(Transition { from, on, strict }),
                None if failed => {}
                None => errors.push(syn::Error::new_spanned(
                    attr,
                    "a transition needs its sources: `#[transition(from = State)]` or \
                     `#[transition(from = [A, B], on = Event)]`",
                )),
            }
            unread_transition |= failed || missing;
        }
    }
    let (stored, stored_span) = match rename {
        Some(lit) => (lit.value(), lit.span()),
        None => (stored_name(ident, rule), ident.span()),
    };
    State { ident: ident.clone(), stored, stored_span, initial, terminal, transitions, unread_transition }
}

/// The stored name of a variant or an event under `rule`.
fn stored_name(ident: &Ident, rule: Option<RenameRule>) -> String {
    let name = ident.unraw().to_string();
    match rule {
        Some(rule) => rule.apply(&name),
        None => name,
    }
}

/// The key of `meta` if it is one of `keys`; otherwise reports it, skips its value and gives
/// `None`.
fn known_key(
    meta: &ParseNestedMeta<'_>,
    attribute: &str,
    keys: &[&'static str],
    errors: &mut Errors,
) -> syn::Result<Option<&'static str>> {
    if let Some(key) = keys.iter().find(|key| meta.path.is_ident(key)) {
        return Ok(Some(key));
    }
    let written = meta.path.to_token_stream().to_string().replace(' ', "");
    let known = keys.iter().map(|key| format!("`{key}`")).collect::<Vec<_>>().join(", ");
    errors.push(syn::Error::new_spanned(
        &meta.path,
        format!("unknown key `{written}` in `#[{attribute}(...)]`; the known keys are: {known}"),
    ));
    skip_value(meta.input)?;
    Ok(None)
}

/// Records the use of `key`; reports it and gives `false` when it was already used.
fn first_use(meta: &ParseNestedMeta<'_>, key: &'static str, seen: &mut Vec<&'static str>, errors: &mut Errors) -> bool {
    if seen.contains(&key) {
        errors.push(syn::Error::new_spanned(&meta.path, format!("duplicate key `{key}`")));
        return false;
    }
    seen.push(key);
    true
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
