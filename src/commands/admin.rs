//! The admins' commands: `admin/stats`, `admin/user`, `admin/erase-user`,
//! `admin/delete-file`, `admin/pause` and `admin/resume`. Only the JIDs of
//! `[admin] jids` see or run them (checked before any stage, in
//! [`Commands::execute`](super::Commands::execute)).

use std::time::Instant;

use jid::BareJid;
use xmpp_parsers::data_forms::{DataFormType, Field, FieldType};

use super::user::{self, form};
use super::{forms, storage_failure, Asker, Inner, Outcome, Refusal, Stage};
use crate::clock::unix_now;
use crate::xmpp::adhoc::{Action, CommandRequest, CommandResponse, ListedCommand, NoteType};

pub const STATS: ListedCommand = ListedCommand {
    node: "admin/stats",
    name: "Service statistics",
};
pub const USER: ListedCommand = ListedCommand {
    node: "admin/user",
    name: "A user's usage and files",
};
pub const ERASE_USER: ListedCommand = ListedCommand {
    node: "admin/erase-user",
    name: "Erase a user's files and records",
};
pub const DELETE_FILE: ListedCommand = ListedCommand {
    node: "admin/delete-file",
    name: "Delete any file by URL",
};
pub const PAUSE: ListedCommand = ListedCommand {
    node: "admin/pause",
    name: "Pause uploads (downloads go on)",
};
pub const RESUME: ListedCommand = ListedCommand {
    node: "admin/resume",
    name: "Resume uploads",
};

/// The first stage of admin node `node`.
pub(crate) fn start(
    inner: &Inner,
    node: &'static str,
    asker: &Asker<'_>,
    now: Instant,
) -> Result<Outcome, Refusal> {
    match node {
        n if n == STATS.node => stats(inner, node).map(Into::into),
        n if n == USER.node || n == ERASE_USER.node => {
            inner.open(node, asker, Stage::AskUser, now, |id| {
                Ok(ask_user(node, id))
            })
        }
        n if n == DELETE_FILE.node => inner.open(node, asker, Stage::ChooseFile, now, |id| {
            Ok(user::url_form(node, id))
        }),
        n if n == PAUSE.node => {
            let text = match inner.slots.pause() {
                true => "Uploads are paused: slot requests are refused, downloads go on",
                false => "Uploads were already paused",
            };
            tracing::info!(by = %crate::logging::LoggedJid(asker.bare), "uploads paused by command");
            Ok(CommandResponse::completed(node, None)
                .with_note(NoteType::Info, text)
                .into())
        }
        _ => {
            let text = match inner.slots.resume() {
                true => "Uploads are resumed",
                false => "Uploads were not paused",
            };
            tracing::info!(by = %crate::logging::LoggedJid(asker.bare), "uploads resumed by command");
            Ok(CommandResponse::completed(node, None)
                .with_note(NoteType::Info, text)
                .into())
        }
    }
}

/// A later stage of admin node `node`.
pub(crate) fn continue_stage(
    inner: &Inner,
    node: &'static str,
    asker: &Asker<'_>,
    sessionid: &str,
    stage: Stage,
    request: &CommandRequest,
    now: Instant,
) -> Result<Outcome, Refusal> {
    match stage {
        Stage::AskUser if node == USER.node => {
            let user = asked_user(request)?;
            inner.page(node, asker, user, 0, Some(sessionid), now)
        }
        Stage::AskUser => {
            let user = asked_user(request)?;
            let files = inner.store.user_files(&user).map_err(storage_failure)?;
            let bytes: u64 = files.iter().map(|f| f.size).sum();
            let warning = Field {
                label: None,
                values: vec![format!(
                    "Erase {user}: {} files, {bytes} bytes, and their usage records? This cannot be undone.",
                    files.len()
                )],
                ..Field::new("warning", FieldType::Fixed)
            };
            let confirm = Field {
                label: Some("Erase".into()),
                required: true,
                ..Field::new("confirm", FieldType::Boolean)
            };
            let form = form(
                DataFormType::Form,
                format!("Erase {user}?"),
                vec![warning, confirm],
            );
            inner.resume(sessionid, asker, node, Stage::ConfirmErase { user }, now);
            Ok(
                CommandResponse::executing(node, sessionid, vec![Action::Complete], form.into())
                    .into(),
            )
        }
        Stage::ConfirmErase { user } => {
            let form = forms::submitted(request.form.as_ref())?;
            if !forms::boolean(form, "confirm")? {
                return Ok(CommandResponse::completed(node, None)
                    .with_note(NoteType::Info, "Nothing was erased")
                    .into());
            }
            let files = inner.store.user_files(&user).map_err(storage_failure)?;
            let erased = inner.store.erase_user(&user).map_err(storage_failure)?;
            tracing::info!(
                user = %crate::logging::LoggedJid(&user),
                files = erased.files,
                bytes = erased.bytes,
                left = erased.left,
                by = %crate::logging::LoggedJid(asker.bare),
                "user erased by command"
            );
            let mut text = format!(
                "Erased {user}: {} files, {} bytes",
                erased.files, erased.bytes
            );
            if erased.left > 0 {
                text.push_str(&format!("; {} files were busy, run it again", erased.left));
            }
            Ok(Outcome {
                response: CommandResponse::completed(node, None).with_note(NoteType::Info, text),
                deleted: files.into_iter().map(|f| f.id).collect(),
            })
        }
        Stage::ChooseFile | Stage::Page { .. } => {
            // Both are handled by the caller; a stage of another node cannot reach here.
            Err(super::internal("Unexpected stage"))
        }
    }
}

/// The form asking which user.
fn ask_user(node: &str, sessionid: &str) -> CommandResponse {
    let field = Field {
        label: Some("User (bare JID)".into()),
        required: true,
        ..Field::new("user", FieldType::JidSingle)
    };
    let form = form(DataFormType::Form, "Which user?".into(), vec![field]);
    CommandResponse::executing(node, sessionid, vec![Action::Next], form.into())
}

/// The bare JID the `user` field names.
fn asked_user(request: &CommandRequest) -> Result<String, Refusal> {
    let form = forms::submitted(request.form.as_ref())?;
    let text = forms::required(form, "user")?;
    match text.parse::<BareJid>() {
        Ok(jid) if jid.node().is_some() => Ok(jid.to_string()),
        _ => Err(forms::bad_request("Field 'user' must be a user's bare JID")),
    }
}

/// `admin/stats`: the service at a glance.
fn stats(inner: &Inner, node: &str) -> Result<CommandResponse, Refusal> {
    let census = inner.store.census(unix_now()).map_err(storage_failure)?;
    let disk = inner.store.disk_space().map_err(storage_failure)?;
    let pending = (inner.pending_relays)();
    let link = inner.link.up_since().map_or("down".to_owned(), |since| {
        format!("up for {} s", since.elapsed().as_secs())
    });
    let field = |var: &str, label: &str, value: String| Field {
        label: Some(label.to_owned()),
        ..Field::text_single(var, &value)
    };
    let fields = vec![
        field("stored-files", "Files stored", census.files.to_string()),
        field("stored-bytes", "Bytes stored", census.bytes.to_string()),
        field(
            "uploads-today",
            "Uploads today (UTC)",
            census.files_today.to_string(),
        ),
        field(
            "uploaded-today-bytes",
            "Bytes uploaded today (UTC)",
            census.bytes_today.to_string(),
        ),
        field(
            "relays-pending",
            "Relays pending",
            pending.relays.to_string(),
        ),
        field(
            "deliveries-pending",
            "Deliveries pending (sent, due or held)",
            pending.deliveries.to_string(),
        ),
        field(
            "deliveries-held",
            "Deliveries held for offline recipients",
            pending.held.to_string(),
        ),
        field(
            "disk-free-bytes",
            "Free disk (bytes)",
            disk.available.to_string(),
        ),
        field(
            "disk-total-bytes",
            "Disk size (bytes)",
            disk.total.to_string(),
        ),
        field(
            "uploads-paused",
            "Uploads paused",
            inner.slots.is_paused().to_string(),
        ),
        field("link", "XMPP link", link),
        field(
            "uptime-secs",
            "Uptime (s)",
            inner.started.elapsed().as_secs().to_string(),
        ),
        field("version", "Version", env!("CARGO_PKG_VERSION").to_owned()),
    ];
    let form = form(DataFormType::Result_, "Satchel".into(), fields);
    Ok(CommandResponse::completed(node, Some(form.into())))
}
