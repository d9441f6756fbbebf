//! XEP-0050 Ad-Hoc Commands: the `<command/>` payload, as a request and as
//! an answer, and the XEP's error conditions.
//!
//! xmpp-parsers 0.23 has XEP-0004 data forms ([`DataForm`]) but no XEP-0050
//! module, so the shapes are here, in its style: a request is parsed into a
//! [`CommandRequest`] (refusing what the XEP does not allow, with the
//! condition it names), an answer is built from a [`CommandResponse`]. What
//! a command does lives above the XMPP side; the router hands it requests
//! through its [`Delegate`](super::delegate::Delegate).

use minidom::Element;
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

/// The XEP-0050 namespace, also the disco node that lists the commands.
pub const NS: &str = "http://jabber.org/protocol/commands";

/// What the requester asks of a command (XEP-0050 §3.4 `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Execute,
    Cancel,
    Prev,
    Next,
    Complete,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Execute => "execute",
            Action::Cancel => "cancel",
            Action::Prev => "prev",
            Action::Next => "next",
            Action::Complete => "complete",
        }
    }

    fn from_name(name: &str) -> Option<Action> {
        [
            Action::Execute,
            Action::Cancel,
            Action::Prev,
            Action::Next,
            Action::Complete,
        ]
        .into_iter()
        .find(|action| action.name() == name)
    }
}

/// A command request: which node, in which session, doing what, with which form.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRequest {
    pub node: String,
    pub sessionid: Option<String>,
    /// `execute` when the request names none, as the XEP says.
    pub action: Action,
    /// The submitted data form, if any.
    pub form: Option<DataForm>,
}

/// Why a `<command/>` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("The command has no node")]
    MissingNode,
    #[error("Unknown action '{0}'")]
    MalformedAction(String),
    #[error("The data form is malformed: {0}")]
    BadForm(String),
}

impl ParseError {
    /// The error answer the XEP prescribes.
    pub fn to_stanza_error(&self) -> StanzaError {
        let specific = match self {
            ParseError::MalformedAction(_) => Some(Specific::MalformedAction),
            ParseError::BadForm(_) => Some(Specific::BadPayload),
            ParseError::MissingNode => None,
        };
        error(
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            specific,
            &self.to_string(),
        )
    }
}

/// Reads a `<command/>` request.
pub fn parse(command: &Element) -> Result<CommandRequest, ParseError> {
    let node = command
        .attr("node")
        .filter(|node| !node.is_empty())
        .ok_or(ParseError::MissingNode)?
        .to_owned();
    let action = match command.attr("action") {
        None => Action::Execute,
        Some(name) => Action::from_name(name).ok_or_else(|| {
            ParseError::MalformedAction(name.chars().take(64).collect::<String>())
        })?,
    };
    let form = command
        .get_child("x", xmpp_parsers::ns::DATA_FORMS)
        .map(|x| DataForm::try_from(x.clone()).map_err(|e| ParseError::BadForm(e.to_string())))
        .transpose()?;
    Ok(CommandRequest {
        node,
        sessionid: command.attr("sessionid").map(str::to_owned),
        action,
        form,
    })
}

/// Where a command stands after an answer (XEP-0050 §3.4 `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Executing,
    Completed,
    Canceled,
}

/// How a note is meant (XEP-0050 §3.4 `<note type='…'/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteType {
    Info,
    Warn,
    Error,
}

/// A command's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandResponse {
    pub node: String,
    pub sessionid: Option<String>,
    pub status: Status,
    /// The actions the requester may take next, and which is the default;
    /// none when the command is over.
    pub actions: Vec<Action>,
    pub default_action: Option<Action>,
    pub notes: Vec<(NoteType, String)>,
    /// A data form (built from a [`DataForm`], or by [`table`]).
    pub form: Option<Element>,
}

impl CommandResponse {
    /// A finished command, showing `form` (if any).
    pub fn completed(node: &str, form: Option<Element>) -> CommandResponse {
        CommandResponse {
            node: node.to_owned(),
            sessionid: None,
            status: Status::Completed,
            actions: Vec::new(),
            default_action: None,
            notes: Vec::new(),
            form,
        }
    }

    /// A command waiting for the requester, in session `sessionid`.
    pub fn executing(
        node: &str,
        sessionid: &str,
        actions: Vec<Action>,
        form: Element,
    ) -> CommandResponse {
        CommandResponse {
            node: node.to_owned(),
            sessionid: Some(sessionid.to_owned()),
            status: Status::Executing,
            default_action: actions.first().copied(),
            actions,
            notes: Vec::new(),
            form: Some(form),
        }
    }

    /// The answer to `cancel`.
    pub fn canceled(node: &str, sessionid: &str) -> CommandResponse {
        CommandResponse {
            sessionid: Some(sessionid.to_owned()),
            status: Status::Canceled,
            ..CommandResponse::completed(node, None)
        }
    }

    /// Adds a note.
    pub fn with_note(mut self, kind: NoteType, text: impl Into<String>) -> CommandResponse {
        self.notes.push((kind, text.into()));
        self
    }
}

impl From<CommandResponse> for Element {
    fn from(response: CommandResponse) -> Element {
        let status = match response.status {
            Status::Executing => "executing",
            Status::Completed => "completed",
            Status::Canceled => "canceled",
        };
        let mut command = Element::builder("command", NS)
            .attr(minidom::rxml::xml_ncname!("node").to_owned(), response.node)
            .attr(minidom::rxml::xml_ncname!("status").to_owned(), status);
        if let Some(sessionid) = response.sessionid {
            command = command.attr(
                minidom::rxml::xml_ncname!("sessionid").to_owned(),
                sessionid,
            );
        }
        if !response.actions.is_empty() {
            let mut actions = Element::builder("actions", NS);
            if let Some(default) = response.default_action {
                actions = actions.attr(
                    minidom::rxml::xml_ncname!("execute").to_owned(),
                    default.name(),
                );
            }
            for action in response.actions {
                actions = actions.append(Element::builder(action.name(), NS).build());
            }
            command = command.append(actions.build());
        }
        for (kind, text) in response.notes {
            let kind = match kind {
                NoteType::Info => "info",
                NoteType::Warn => "warn",
                NoteType::Error => "error",
            };
            command = command.append(
                Element::builder("note", NS)
                    .attr(minidom::rxml::xml_ncname!("type").to_owned(), kind)
                    .append(text)
                    .build(),
            );
        }
        if let Some(form) = response.form {
            command = command.append(with_field_types_written(form));
        }
        command.build()
    }
}

/// `form` with `type='text-single'` written on each of its fields that has
/// none. XEP-0004 makes it the default, and xmpp-parsers leaves it out, but
/// Profanity 0.13 shows the values of untyped fields as empty.
fn with_field_types_written(mut form: Element) -> Element {
    for field in form.children_mut() {
        if field.is("field", xmpp_parsers::ns::DATA_FORMS) && field.attr("type").is_none() {
            field.set_attr(
                minidom::rxml::Namespace::NONE,
                minidom::rxml::xml_ncname!("type").to_owned(),
                "text-single",
            );
        }
    }
    form
}

/// A XEP-0004 result of several items (§3.4): `form` with a `<reported/>`
/// header of `columns` (var, label) and one `<item/>` per row, whose values
/// go to the columns in order. xmpp-parsers' [`DataForm`] has no items.
pub fn table(form: DataForm, columns: &[(&str, &str)], rows: Vec<Vec<String>>) -> Element {
    let field = |var: &str| {
        Element::builder("field", xmpp_parsers::ns::DATA_FORMS)
            .attr(minidom::rxml::xml_ncname!("var").to_owned(), var)
    };
    let mut element = Element::from(form);
    let mut reported = Element::builder("reported", xmpp_parsers::ns::DATA_FORMS);
    for (var, label) in columns {
        reported = reported.append(
            field(var)
                .attr(minidom::rxml::xml_ncname!("label").to_owned(), *label)
                .build(),
        );
    }
    element.append_child(reported.build());
    for row in rows {
        let mut item = Element::builder("item", xmpp_parsers::ns::DATA_FORMS);
        for ((var, _), value) in columns.iter().zip(row) {
            item = item.append(
                field(var)
                    .append(
                        Element::builder("value", xmpp_parsers::ns::DATA_FORMS)
                            .append(value)
                            .build(),
                    )
                    .build(),
            );
        }
        element.append_child(item.build());
    }
    element
}

/// The XEP-0050 application-specific error conditions (§4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Specific {
    BadAction,
    BadSessionid,
    MalformedAction,
    SessionExpired,
    BadPayload,
}

/// An error answer: `condition`, the XEP's `specific` one if any, and `text`.
pub fn error(
    kind: ErrorType,
    condition: DefinedCondition,
    specific: Option<Specific>,
    text: &str,
) -> StanzaError {
    let mut error = StanzaError::new(kind, condition, "en", text);
    error.other = specific.map(|specific| {
        let name = match specific {
            Specific::BadAction => "bad-action",
            Specific::BadSessionid => "bad-sessionid",
            Specific::MalformedAction => "malformed-action",
            Specific::SessionExpired => "session-expired",
            Specific::BadPayload => "bad-payload",
        };
        Element::builder(name, NS).build()
    });
    error
}

/// One command as disco#items lists it: its node and its human name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedCommand {
    pub node: &'static str,
    pub name: &'static str,
}

/// The disco#items answer on the commands node: `commands`, each an item of `component`.
pub fn items(component: &jid::BareJid, commands: &[ListedCommand]) -> DiscoItemsResult {
    DiscoItemsResult {
        node: Some(NS.to_owned()),
        items: commands
            .iter()
            .map(|command| Item {
                jid: component.clone().into(),
                node: Some(command.node.to_owned()),
                name: Some(command.name.to_owned()),
            })
            .collect(),
        rsm: None,
    }
}

/// The disco#info answer about the commands node, or about one
/// command's node, which `command` names (XEP-0050 §2.2).
pub fn node_info(node: &str, command: Option<&ListedCommand>) -> DiscoInfoResult {
    let (kind, name, features) = match command {
        None => ("command-list", "Commands", Default::default()),
        Some(command) => (
            "command-node",
            command.name,
            [NS, xmpp_parsers::ns::DATA_FORMS]
                .into_iter()
                .map(str::to_owned)
                .collect(),
        ),
    };
    DiscoInfoResult {
        node: Some(node.to_owned()),
        identities: vec![Identity::new("automation", kind, "en", name)],
        features,
        extensions: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::data_forms::{DataFormType, Field, FieldType};

    fn element(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn result_fields_say_their_type() {
        let form = DataForm {
            type_: DataFormType::Result_,
            title: None,
            instructions: None,
            fields: vec![
                Field::text_single("stored-bytes", "21"),
                Field::new("file", FieldType::ListSingle),
            ],
        };
        let answer = Element::from(CommandResponse::completed("usage", Some(form.into())));
        let x = answer.get_child("x", xmpp_parsers::ns::DATA_FORMS).unwrap();
        let types: Vec<_> = x.children().map(|field| field.attr("type")).collect();
        assert_eq!(types, [Some("text-single"), Some("list-single")]);
    }

    /// XEP-0050 §2.4.1: executing a command, with no action named.
    #[test]
    fn a_bare_execute_request_is_read() {
        let request = parse(&element(
            "<command xmlns='http://jabber.org/protocol/commands' node='list'/>",
        ))
        .unwrap();
        assert_eq!(request.node, "list");
        assert_eq!(request.action, Action::Execute);
        assert_eq!(request.sessionid, None);
        assert_eq!(request.form, None);
    }

    /// XEP-0050 §2.4.2: a later stage submits a form in the session.
    #[test]
    fn a_next_stage_with_a_form_is_read() {
        let request = parse(&element(
            "<command xmlns='http://jabber.org/protocol/commands' sessionid='config:20020923T213616Z-700' node='config' action='next'>\
               <x xmlns='jabber:x:data' type='submit'>\
                 <field var='mode'><value>2</value></field>\
               </x>\
             </command>",
        ))
        .unwrap();
        assert_eq!(request.action, Action::Next);
        assert_eq!(
            request.sessionid.as_deref(),
            Some("config:20020923T213616Z-700")
        );
        let form = request.form.unwrap();
        assert_eq!(form.type_, DataFormType::Submit);
        assert_eq!(form.fields[0].var.as_deref(), Some("mode"));
        assert_eq!(form.fields[0].values, ["2"]);
    }

    /// XEP-0050 §2.4.3: cancelling a session.
    #[test]
    fn a_cancel_is_read() {
        let request = parse(&element(
            "<command xmlns='http://jabber.org/protocol/commands' sessionid='config:20020923T213616Z-700' node='config' action='cancel'/>",
        ))
        .unwrap();
        assert_eq!(request.action, Action::Cancel);
    }

    #[test]
    fn hostile_requests_are_refused_with_the_xeps_conditions() {
        for (xml, expected) in [
            (
                "<command xmlns='http://jabber.org/protocol/commands'/>",
                ParseError::MissingNode,
            ),
            (
                "<command xmlns='http://jabber.org/protocol/commands' node=''/>",
                ParseError::MissingNode,
            ),
            (
                "<command xmlns='http://jabber.org/protocol/commands' node='a' action='explode'/>",
                ParseError::MalformedAction("explode".into()),
            ),
        ] {
            assert_eq!(parse(&element(xml)), Err(expected), "{xml}");
        }
        let long_action = "x".repeat(4_000);
        let Err(ParseError::MalformedAction(echoed)) = parse(&element(&format!(
            "<command xmlns='http://jabber.org/protocol/commands' node='a' action='{long_action}'/>"
        ))) else {
            panic!("a long action is malformed");
        };
        assert_eq!(echoed.len(), 64, "the echo of a long action is cut");
        for form in [
            "<x xmlns='jabber:x:data'/>",
            "<x xmlns='jabber:x:data' type='wrong'/>",
            "<x xmlns='jabber:x:data' type='submit'><field/></x>",
            "<x xmlns='jabber:x:data' type='submit'><field var='a' type='nope'/></x>",
        ] {
            let result = parse(&element(&format!(
                "<command xmlns='http://jabber.org/protocol/commands' node='a'>{form}</command>"
            )));
            assert!(matches!(result, Err(ParseError::BadForm(_))), "{form}");
            let error = result.unwrap_err().to_stanza_error();
            assert_eq!(error.defined_condition, DefinedCondition::BadRequest);
            assert!(error.other.unwrap().is("bad-payload", NS));
        }
    }

    /// XEP-0050 §2.4.2: a stage waiting for the requester, `next` the default.
    #[test]
    fn an_executing_answer_is_built_as_in_the_xep() {
        let form = DataForm {
            type_: DataFormType::Form,
            title: Some("Configure Service".into()),
            instructions: None,
            fields: vec![Field::text_single("mode", "")],
        };
        let element = Element::from(
            CommandResponse::executing(
                "config",
                "config:20020923T213616Z-700",
                vec![Action::Next, Action::Complete],
                form.into(),
            )
            .with_note(NoteType::Info, "Service 'httpd' has been configured."),
        );
        assert!(element.is("command", NS));
        assert_eq!(element.attr("node"), Some("config"));
        assert_eq!(element.attr("status"), Some("executing"));
        assert_eq!(
            element.attr("sessionid"),
            Some("config:20020923T213616Z-700")
        );
        let actions = element.get_child("actions", NS).unwrap();
        assert_eq!(actions.attr("execute"), Some("next"));
        let allowed: Vec<&str> = actions.children().map(Element::name).collect();
        assert_eq!(allowed, ["next", "complete"]);
        let note = element.get_child("note", NS).unwrap();
        assert_eq!(note.attr("type"), Some("info"));
        assert_eq!(note.text(), "Service 'httpd' has been configured.");
        assert!(element.has_child("x", xmpp_parsers::ns::DATA_FORMS));
    }

    /// XEP-0004 §3.4: a result of several items, with its header.
    #[test]
    fn a_table_has_a_header_and_one_item_per_row() {
        let form = DataForm {
            type_: DataFormType::Result_,
            title: Some("Files".into()),
            instructions: None,
            fields: Vec::new(),
        };
        let element = table(
            form,
            &[("name", "Name"), ("size", "Size")],
            vec![
                vec!["a.png".into(), "10".into()],
                vec!["b.png".into(), "20".into()],
            ],
        );
        let data = xmpp_parsers::ns::DATA_FORMS;
        let reported = element.get_child("reported", data).unwrap();
        let header: Vec<_> = reported
            .children()
            .map(|f| (f.attr("var").unwrap(), f.attr("label").unwrap()))
            .collect();
        assert_eq!(header, [("name", "Name"), ("size", "Size")]);
        let rows: Vec<Vec<String>> = element
            .children()
            .filter(|c| c.is("item", data))
            .map(|item| {
                item.children()
                    .map(|f| f.children().next().unwrap().text())
                    .collect()
            })
            .collect();
        assert_eq!(rows, [["a.png", "10"], ["b.png", "20"]]);
    }

    /// XEP-0050 §2.4.3: a canceled session offers no action.
    #[test]
    fn completed_and_canceled_answers_offer_no_action() {
        let canceled = Element::from(CommandResponse::canceled("config", "s1"));
        assert_eq!(canceled.attr("status"), Some("canceled"));
        assert_eq!(canceled.attr("sessionid"), Some("s1"));
        assert!(!canceled.has_child("actions", NS));
        let completed = Element::from(CommandResponse::completed("usage", None));
        assert_eq!(completed.attr("status"), Some("completed"));
        assert_eq!(completed.attr("sessionid"), None);
        assert_eq!(completed.children().count(), 0);
    }

    /// XEP-0050 §2.2: the command list is disco#items on the commands node.
    #[test]
    fn the_command_list_is_a_disco_items_answer_on_the_commands_node() {
        let component: jid::BareJid = "upload.example.org".parse().unwrap();
        let element = Element::from(items(
            &component,
            &[ListedCommand {
                node: "usage",
                name: "My usage",
            }],
        ));
        assert_eq!(element.attr("node"), Some(NS));
        let item = element.children().next().unwrap();
        assert_eq!(item.attr("jid"), Some("upload.example.org"));
        assert_eq!(item.attr("node"), Some("usage"));
        assert_eq!(item.attr("name"), Some("My usage"));
    }

    /// XEP-0050 §2.2: what disco#info says of the nodes.
    #[test]
    fn node_info_names_the_automation_identities() {
        let list = Element::from(node_info(NS, None));
        let identity = list
            .get_child("identity", xmpp_parsers::ns::DISCO_INFO)
            .unwrap();
        assert_eq!(identity.attr("category"), Some("automation"));
        assert_eq!(identity.attr("type"), Some("command-list"));
        let usage = ListedCommand {
            node: "usage",
            name: "My usage",
        };
        let one = Element::from(node_info("usage", Some(&usage)));
        assert_eq!(one.attr("node"), Some("usage"));
        let identity = one
            .get_child("identity", xmpp_parsers::ns::DISCO_INFO)
            .unwrap();
        assert_eq!(identity.attr("type"), Some("command-node"));
        let features: Vec<_> = one
            .children()
            .filter(|c| c.name() == "feature")
            .map(|f| f.attr("var").unwrap())
            .collect();
        assert_eq!(features, [NS, "jabber:x:data"]);
    }

    #[test]
    fn errors_carry_the_specific_condition() {
        let error = error(
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            Some(Specific::BadSessionid),
            "Unknown session",
        );
        assert!(error.other.unwrap().is("bad-sessionid", NS));
    }
}
