//! Reading the forms requesters submit: every refusal is `bad-request`
//! with a text naming the field, and nothing a requester writes is kept
//! whole when it is larger than any real answer could be.

use xmpp_parsers::data_forms::{DataForm, DataFormType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::Refusal;
use crate::xmpp::adhoc::{self, Specific};

/// Fields a submitted form may carry.
pub const MAX_FIELDS: usize = 16;
/// Bytes of one submitted value (a URL or a JID is far shorter).
pub const MAX_VALUE_BYTES: usize = 3072;

/// `bad-request` with `text`, marked as a bad payload.
pub fn bad_request(text: &str) -> Refusal {
    Box::new(adhoc::error(
        ErrorType::Modify,
        DefinedCondition::BadRequest,
        Some(Specific::BadPayload),
        text,
    ))
}

/// The submitted form, checked for its type and size.
pub fn submitted(form: Option<&DataForm>) -> Result<&DataForm, Refusal> {
    let form = form.ok_or_else(|| bad_request("This stage needs the submitted form"))?;
    if form.type_ != DataFormType::Submit {
        return Err(bad_request("The form must be of type 'submit'"));
    }
    if form.fields.len() > MAX_FIELDS {
        return Err(bad_request("The form has too many fields"));
    }
    Ok(form)
}

/// The one value of field `var`, if given and not blank.
pub fn single<'a>(form: &'a DataForm, var: &str) -> Result<Option<&'a str>, Refusal> {
    let mut fields = form.fields.iter().filter(|f| f.var.as_deref() == Some(var));
    let Some(field) = fields.next() else {
        return Ok(None);
    };
    if fields.next().is_some() {
        return Err(bad_request(&format!("Field '{var}' is given twice")));
    }
    match field.values.as_slice() {
        [] => Ok(None),
        [value] if value.len() > MAX_VALUE_BYTES => Err(bad_request(&format!(
            "Field '{var}' is longer than {MAX_VALUE_BYTES} bytes"
        ))),
        [value] => Ok(Some(value.trim()).filter(|v| !v.is_empty())),
        _ => Err(bad_request(&format!("Field '{var}' takes one value"))),
    }
}

/// The value of required field `var`.
pub fn required<'a>(form: &'a DataForm, var: &str) -> Result<&'a str, Refusal> {
    single(form, var)?.ok_or_else(|| bad_request(&format!("Field '{var}' is required")))
}

/// The value of boolean field `var` (XEP-0004: `1`/`true` or `0`/`false`).
pub fn boolean(form: &DataForm, var: &str) -> Result<bool, Refusal> {
    match single(form, var)? {
        Some("1" | "true") => Ok(true),
        None | Some("0" | "false") => Ok(false),
        Some(_) => Err(bad_request(&format!("Field '{var}' must be true or false"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::data_forms::Field;

    fn form(fields: Vec<Field>) -> DataForm {
        DataForm {
            type_: DataFormType::Submit,
            title: None,
            instructions: None,
            fields,
        }
    }

    fn text(error: Refusal) -> String {
        assert_eq!(error.defined_condition, DefinedCondition::BadRequest);
        error.texts.values().next().unwrap().clone()
    }

    #[test]
    fn values_are_read_trimmed_and_blank_is_absent() {
        let form = form(vec![
            Field::text_single("url", "  https://a/b  "),
            Field::text_single("blank", " "),
        ]);
        assert_eq!(single(&form, "url").unwrap(), Some("https://a/b"));
        assert_eq!(single(&form, "blank").unwrap(), None);
        assert_eq!(single(&form, "absent").unwrap(), None);
        assert!(text(required(&form, "absent").unwrap_err()).contains("'absent'"));
    }

    #[test]
    fn hostile_fields_are_refused_naming_the_field() {
        let twice = form(vec![
            Field::text_single("url", "a"),
            Field::text_single("url", "b"),
        ]);
        assert!(text(single(&twice, "url").unwrap_err()).contains("'url' is given twice"));
        let two_values = form(vec![Field::text_single("url", "a").with_value("b")]);
        assert!(text(single(&two_values, "url").unwrap_err()).contains("'url' takes one value"));
        let huge = form(vec![Field::text_single(
            "url",
            &"x".repeat(MAX_VALUE_BYTES + 1),
        )]);
        assert!(text(single(&huge, "url").unwrap_err()).contains("'url' is longer"));
        let not_boolean = form(vec![Field::text_single("confirm", "yes")]);
        assert!(text(boolean(&not_boolean, "confirm").unwrap_err()).contains("'confirm'"));
        let many = form(
            (0..=MAX_FIELDS)
                .map(|n| Field::text_single(&format!("f{n}"), ""))
                .collect(),
        );
        assert!(text(submitted(Some(&many)).unwrap_err()).contains("too many fields"));
        assert!(submitted(None).is_err());
        let mut wrong_type = form(Vec::new());
        wrong_type.type_ = DataFormType::Form;
        assert!(text(submitted(Some(&wrong_type)).unwrap_err()).contains("submit"));
    }

    #[test]
    fn booleans_take_the_xeps_spellings() {
        for (value, expected) in [("1", true), ("true", true), ("0", false), ("false", false)] {
            let form = form(vec![Field::text_single("confirm", value)]);
            assert_eq!(boolean(&form, "confirm").unwrap(), expected);
        }
        assert!(!boolean(&form(Vec::new()), "confirm").unwrap());
    }
}
