//! The commands of every user of an allowed domain: `usage`, `files` and
//! `delete`. A user only ever sees and touches their own files: a file of
//! someone else is answered exactly as a file that does not exist.

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType, Option_};
use xmpp_parsers::stanza_error::DefinedCondition;

use super::{cancel, forms, storage_failure, Inner, Outcome, Refusal};
use crate::clock::unix_now;
use crate::storage::{FileId, FileRecord};
use crate::xmpp::adhoc::{self, Action, CommandRequest, CommandResponse, ListedCommand, NoteType};
use crate::xmpp::http_upload::xep0082_stamp;

pub const USAGE: ListedCommand = ListedCommand {
    node: "usage",
    name: "My usage and limits",
};
pub const FILES: ListedCommand = ListedCommand {
    node: "files",
    name: "My files",
};
pub const DELETE: ListedCommand = ListedCommand {
    node: "delete",
    name: "Delete one of my files",
};

/// Files on one page of `files`.
pub const PAGE_SIZE: usize = 50;

/// A form of `type_` titled `title`, without FORM_TYPE.
pub(crate) fn form(type_: DataFormType, title: String, fields: Vec<Field>) -> DataForm {
    DataForm {
        type_,
        title: Some(title),
        instructions: None,
        fields,
    }
}

fn labelled(var: &str, label: &str, value: impl ToString) -> Field {
    Field {
        label: Some(label.to_owned()),
        ..Field::text_single(var, &value.to_string())
    }
}

/// `user`'s usage and limits, as fields of a result form.
pub(crate) fn usage_fields(inner: &Inner, user: &str) -> Result<Vec<Field>, Refusal> {
    let usage = inner
        .store
        .usage(user, unix_now())
        .map_err(storage_failure)?;
    let files = inner
        .store
        .user_files_by_expiry(user)
        .map_err(storage_failure)?;
    let limits = inner.slots.quota_limits();
    Ok(vec![
        labelled(
            "uploaded-today-bytes",
            "Bytes uploaded today (UTC)",
            usage.day_bytes,
        ),
        labelled("stored-bytes", "Bytes stored", usage.stored_bytes),
        labelled("stored-files", "Files stored", files.len()),
        labelled(
            "daily-upload-limit-bytes",
            "Daily upload limit (bytes)",
            limits.daily_upload_bytes,
        ),
        labelled(
            "storage-limit-bytes",
            "Storage limit (bytes)",
            limits.user_storage_bytes,
        ),
        labelled(
            "max-file-size-bytes",
            "Largest file (bytes)",
            inner.slots.max_file_size(),
        ),
    ])
}

/// `usage`: one result form, and done.
pub(crate) fn usage(inner: &Inner, user: &str, node: &str) -> Result<CommandResponse, Refusal> {
    let form = form(
        DataFormType::Result_,
        format!("Usage of {user}"),
        usage_fields(inner, user)?,
    );
    Ok(CommandResponse::completed(node, Some(form.into())))
}

/// Page `page` (clamped to the last) of `files`: the page shown, its form
/// (a table, newest first), and the actions that page through the rest
/// (none when everything fits on one page).
pub(crate) fn files_page(
    inner: &Inner,
    user: &str,
    files: &[FileRecord],
    page: usize,
    fields: Vec<Field>,
) -> (usize, Element, Vec<Action>) {
    let pages = files.len().div_ceil(PAGE_SIZE).max(1);
    let page = page.min(pages - 1);
    let rows = files
        .iter()
        .skip(page * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|file| {
            vec![
                file.filename.clone(),
                file.size.to_string(),
                file.content_type.clone(),
                xep0082_stamp(file.created),
                xep0082_stamp(file.expires),
                inner.url_of(file),
            ]
        })
        .collect();
    let title = format!(
        "Files of {user}: {} (page {} of {pages})",
        files.len(),
        page + 1
    );
    let table = adhoc::table(
        form(DataFormType::Result_, title, fields),
        &[
            ("name", "Name"),
            ("size", "Size (bytes)"),
            ("type", "Type"),
            ("uploaded", "Uploaded"),
            ("expires", "Expires"),
            ("url", "URL"),
        ],
        rows,
    );
    let mut actions = Vec::new();
    if pages > 1 {
        if page + 1 < pages {
            actions.push(Action::Next);
        }
        if page > 0 {
            actions.push(Action::Prev);
        }
        actions.push(Action::Complete);
    }
    (page, table, actions)
}

/// `delete`, first stage: a list of the user's newest files, or a URL.
pub(crate) fn choose_file_form(
    inner: &Inner,
    user: &str,
    node: &str,
    sessionid: &str,
) -> Result<CommandResponse, Refusal> {
    let files = inner.store.user_files(user).map_err(storage_failure)?;
    if files.is_empty() {
        return Ok(
            CommandResponse::completed(node, None).with_note(NoteType::Info, "You have no files")
        );
    }
    let options = files
        .iter()
        .take(PAGE_SIZE)
        .map(|file| Option_ {
            label: Some(format!(
                "{} ({} bytes, {})",
                file.filename,
                file.size,
                xep0082_stamp(file.created)
            )),
            value: file.id.to_string(),
        })
        .collect();
    let choose = Field {
        label: Some(format!("File (your {PAGE_SIZE} newest)")),
        options,
        ..Field::new("file", FieldType::ListSingle)
    };
    let url = Field {
        label: Some("Or its URL".into()),
        ..Field::new("url", FieldType::TextSingle)
    };
    let form = form(
        DataFormType::Form,
        "Delete a file".into(),
        vec![choose, url],
    );
    Ok(CommandResponse::executing(
        node,
        sessionid,
        vec![Action::Complete],
        form.into(),
    ))
}

/// The form asking for the URL of any file (`admin/delete-file`).
pub(crate) fn url_form(node: &str, sessionid: &str) -> CommandResponse {
    let url = Field {
        label: Some("URL of the file".into()),
        required: true,
        ..Field::new("url", FieldType::TextSingle)
    };
    let form = form(DataFormType::Form, "Delete a file".into(), vec![url]);
    CommandResponse::executing(node, sessionid, vec![Action::Complete], form.into())
}

/// `delete` (and `admin/delete-file`), second stage: deletes the file the
/// form names, if it is `user`'s (or anyone's, when not `own_only`).
pub(crate) fn delete_chosen(
    inner: &Inner,
    user: &str,
    node: &str,
    request: &CommandRequest,
    own_only: bool,
) -> Result<Outcome, Refusal> {
    let form = forms::submitted(request.form.as_ref())?;
    let id: FileId = match (forms::single(form, "file")?, forms::single(form, "url")?) {
        (Some(id), _) => id
            .parse()
            .map_err(|_| forms::bad_request("Field 'file' is not one of the listed files"))?,
        (None, Some(url)) => inner.file_of_url(url).ok_or_else(|| {
            forms::bad_request("Field 'url' is not the URL of a file of this service")
        })?,
        (None, None) => {
            return Err(forms::bad_request(if own_only {
                "Field 'file' (or 'url') is required"
            } else {
                "Field 'url' is required"
            }))
        }
    };
    let no_such_file = || cancel(DefinedCondition::ItemNotFound, "No such file");
    let record = inner
        .store
        .file(&id)
        .map_err(storage_failure)?
        .filter(|record| !own_only || record.uploader == user)
        .ok_or_else(no_such_file)?;
    if !inner.store.delete_file(&id).map_err(storage_failure)? {
        return Err(no_such_file());
    }
    tracing::info!(file = %id, size = record.size, by_uploader = own_only, "file deleted by command");
    let response = CommandResponse::completed(node, None).with_note(
        NoteType::Info,
        format!("Deleted {} ({} bytes)", record.filename, record.size),
    );
    Ok(Outcome {
        response,
        deleted: vec![id],
    })
}
