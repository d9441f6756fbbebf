//! Commands for users and admins over XMPP (XEP-0050 ad-hoc commands, with
//! XEP-0004 forms): what a user can see and delete of their own uploads,
//! and what an operator needs when they are not at a shell.
//!
//! The commands act on the store, the slot service and the relay, so they
//! stand at the relay's layer: the router (a layer below) reads the
//! `<command/>` and hands it here through its
//! [`Delegate`](crate::xmpp::delegate::Delegate), which the service wires
//! to [`Commands`]. The XML shapes are the XMPP side's
//! ([`crate::xmpp::adhoc`]); here are the decisions:
//!
//! - who may run what ([`Commands::listed`]): users of an allowed domain
//!   get the user nodes ([`user`]), the JIDs of `[admin] jids` also the
//!   admin nodes ([`admin`]). An admin node run by anyone else is
//!   `forbidden`, an unknown node `item-not-found`;
//! - the stages of a command and the [`sessions`] that carry them;
//! - reading what requesters submit ([`forms`]).
//!
//! Store calls block, so a command runs on a blocking thread; what it
//! deleted is then passed to the relay, which cancels pending relays of it.

pub mod admin;
pub mod forms;
pub mod sessions;
pub mod user;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use jid::{BareJid, Jid};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::config::LiveConfig;
use crate::relay::{PendingRelays, Relay};
use crate::slots::{encode_filename, SlotService};
use crate::storage::{FileId, FileRecord, StorageError, Store};
use crate::xmpp::adhoc::{self, Action, CommandRequest, CommandResponse, ListedCommand, Specific};
use crate::xmpp::link_state::LinkState;
use sessions::{SessionError, Sessions};

/// The error answer of a command, boxed: a [`StanzaError`] is large.
pub type Refusal = Box<StanzaError>;

/// What the commands need of the relay.
pub trait RelayControl: Send + Sync + 'static {
    /// File `file` was deleted: cancel its pending relays.
    fn file_deleted(&self, file: FileId) -> impl Future<Output = ()> + Send;

    /// What the relay still owes.
    fn pending(&self) -> PendingRelays;
}

impl RelayControl for Relay {
    async fn file_deleted(&self, file: FileId) {
        Relay::file_deleted(self, file).await
    }

    fn pending(&self) -> PendingRelays {
        Relay::pending(self)
    }
}

/// Who may run a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    Users,
    Admins,
}

/// Every node, in the order disco#items lists them.
const NODES: [(ListedCommand, Audience); 9] = [
    (user::USAGE, Audience::Users),
    (user::FILES, Audience::Users),
    (user::DELETE, Audience::Users),
    (admin::STATS, Audience::Admins),
    (admin::USER, Audience::Admins),
    (admin::ERASE_USER, Audience::Admins),
    (admin::DELETE_FILE, Audience::Admins),
    (admin::PAUSE, Audience::Admins),
    (admin::RESUME, Audience::Admins),
];

/// What a command of several stages remembers between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stage {
    /// `files` or `admin/user`: the page shown, of whose files.
    Page { user: String, page: usize },
    /// `delete` or `admin/delete-file`: the form to choose a file is out.
    ChooseFile,
    /// `admin/user` or `admin/erase-user`: the form asking whom is out.
    AskUser,
    /// `admin/erase-user`: the confirmation of erasing `user` is out.
    ConfirmErase { user: String },
}

/// The outcome of a stage: the answer, and the files it deleted.
pub(crate) struct Outcome {
    pub(crate) response: CommandResponse,
    pub(crate) deleted: Vec<FileId>,
}

impl From<CommandResponse> for Outcome {
    fn from(response: CommandResponse) -> Outcome {
        Outcome {
            response,
            deleted: Vec::new(),
        }
    }
}

/// Runs the commands; cheap to clone.
pub struct Commands<R> {
    inner: Arc<Inner>,
    relay: Arc<R>,
}

impl<R> Clone for Commands<R> {
    fn clone(&self) -> Self {
        Commands {
            inner: self.inner.clone(),
            relay: self.relay.clone(),
        }
    }
}

/// What the stages of every command share.
pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) slots: SlotService,
    /// Read at each decision: a reload may change the admins and the allowed
    /// domains.
    settings: LiveConfig,
    public_url: String,
    /// The public URL without its scheme, then `/file/`: how a file URL starts.
    file_url_prefix: String,
    sessions: Sessions<Stage>,
    pub(crate) started: Instant,
    /// Whether the XMPP link is up, and since when.
    pub(crate) link: LinkState,
    /// The relay's [`RelayControl::pending`].
    pub(crate) pending_relays: Box<dyn Fn() -> PendingRelays + Send + Sync>,
}

/// Who asks, as a stage sees them.
pub(crate) struct Asker<'a> {
    /// Full JID, which owns the sessions it starts.
    pub(crate) full: &'a str,
    /// Bare JID, which owns files.
    pub(crate) bare: &'a str,
}

impl<R: RelayControl> Commands<R> {
    pub fn new(
        settings: impl Into<LiveConfig>,
        store: Store,
        slots: SlotService,
        relay: Arc<R>,
        link: LinkState,
    ) -> Commands<R> {
        let settings = settings.into();
        let config = settings.get();
        let public = config
            .http
            .public_url
            .split_once("://")
            .map_or("", |(_, rest)| rest);
        Commands {
            inner: Arc::new(Inner {
                store,
                slots,
                public_url: config.http.public_url.clone(),
                file_url_prefix: format!("{public}/file/"),
                settings,
                sessions: Sessions::default(),
                started: Instant::now(),
                link,
                pending_relays: {
                    let relay = relay.clone();
                    Box::new(move || relay.pending())
                },
            }),
            relay,
        }
    }

    /// The commands `asker` may run.
    pub fn listed(&self, asker: &Jid) -> Vec<ListedCommand> {
        let bare = asker.to_bare();
        NODES
            .iter()
            .filter(|(_, audience)| self.inner.may_run(&bare, *audience))
            .map(|(listed, _)| *listed)
            .collect()
    }

    /// Runs a stage of a command for `asker`.
    pub async fn execute(
        &self,
        asker: &Jid,
        request: CommandRequest,
    ) -> Result<CommandResponse, StanzaError> {
        let Some((listed, audience)) = NODES.iter().find(|(l, _)| l.node == request.node) else {
            return Err(*cancel(DefinedCondition::ItemNotFound, "No such command"));
        };
        let bare = asker.to_bare();
        if !self.inner.may_run(&bare, *audience) {
            return Err(*cancel(
                DefinedCondition::Forbidden,
                "You may not run this command",
            ));
        }
        let (node, inner, full) = (listed.node, self.inner.clone(), asker.to_string());
        let outcome = tokio::task::spawn_blocking(move || {
            let asker = Asker {
                full: &full,
                bare: bare.as_str(),
            };
            inner.run(node, &asker, request, Instant::now())
        })
        .await
        .map_err(|_| *internal("The command failed"))?
        .map_err(|refusal| *refusal)?;
        for file in outcome.deleted {
            self.relay.file_deleted(file).await;
        }
        Ok(outcome.response)
    }
}

impl Inner {
    fn may_run(&self, asker: &BareJid, audience: Audience) -> bool {
        let settings = self.settings.get();
        match audience {
            Audience::Users => {
                asker.node().is_some()
                    && crate::domains::is_allowed(
                        &settings.limits.allowed_domains,
                        asker.domain().as_str(),
                    )
            }
            Audience::Admins => settings
                .admins
                .iter()
                .any(|admin| admin.as_str().to_lowercase() == asker.as_str().to_lowercase()),
        }
    }

    /// Starts `node`, or continues the session the request names.
    fn run(
        &self,
        node: &'static str,
        asker: &Asker<'_>,
        request: CommandRequest,
        now: Instant,
    ) -> Result<Outcome, Refusal> {
        let Some(sessionid) = request.sessionid.clone() else {
            if request.action != Action::Execute {
                return Err(Box::new(adhoc::error(
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    Some(Specific::BadAction),
                    "A command starts with 'execute'",
                )));
            }
            return self.start(node, asker, now);
        };
        let stage = self
            .sessions
            .take(&sessionid, asker.full, node, now)
            .map_err(session_error)?;
        if request.action == Action::Cancel {
            return Ok(CommandResponse::canceled(node, &sessionid).into());
        }
        // A stage that goes on puts its session back itself.
        match self.continue_stage(node, asker, &sessionid, stage.clone(), &request, now) {
            Ok(mut outcome) => {
                // The last answer of a session names it too (XEP-0050 §2.4.2).
                outcome.response.sessionid.get_or_insert(sessionid);
                Ok(outcome)
            }
            Err(refusal) => {
                // A mistake in a form leaves the stage open, to be tried again.
                self.sessions
                    .resume(sessionid, asker.full, asker.bare, node, stage, now);
                Err(refusal)
            }
        }
    }
}

/// The first stage of `node`.
impl Inner {
    fn start(
        &self,
        node: &'static str,
        asker: &Asker<'_>,
        now: Instant,
    ) -> Result<Outcome, Refusal> {
        match node {
            n if n == user::USAGE.node => user::usage(self, asker.bare, node).map(Into::into),
            n if n == user::FILES.node => {
                self.page(node, asker, asker.bare.to_owned(), 0, None, now)
            }
            n if n == user::DELETE.node => self.open(node, asker, Stage::ChooseFile, now, |id| {
                user::choose_file_form(self, asker.bare, node, id)
            }),
            n => admin::start(self, n, asker, now),
        }
    }

    /// A later stage of `node`, in session `sessionid`.
    fn continue_stage(
        &self,
        node: &'static str,
        asker: &Asker<'_>,
        sessionid: &str,
        stage: Stage,
        request: &CommandRequest,
        now: Instant,
    ) -> Result<Outcome, Refusal> {
        match stage {
            Stage::Page { user, page } => {
                let page = match request.action {
                    Action::Next | Action::Execute => page + 1,
                    Action::Prev => page.saturating_sub(1),
                    _ => return Ok(CommandResponse::completed(node, None).into()),
                };
                self.page(node, asker, user, page, Some(sessionid), now)
            }
            Stage::ChooseFile => {
                user::delete_chosen(self, asker.bare, node, request, node == user::DELETE.node)
            }
            stage => admin::continue_stage(self, node, asker, sessionid, stage, request, now),
        }
    }

    /// Opens a session at `stage` and answers with the form `form` makes
    /// for its id; the form (or the note) may also end the command.
    pub(crate) fn open(
        &self,
        node: &'static str,
        asker: &Asker<'_>,
        stage: Stage,
        now: Instant,
        form: impl FnOnce(&str) -> Result<CommandResponse, Refusal>,
    ) -> Result<Outcome, Refusal> {
        let id = self
            .sessions
            .start(asker.full, asker.bare, node, stage, now)
            .map_err(|full| {
                Box::new(adhoc::error(
                    ErrorType::Wait,
                    DefinedCondition::ResourceConstraint,
                    None,
                    &full.to_string(),
                ))
            })?;
        let response = form(&id)?;
        if response.status != adhoc::Status::Executing {
            let _ = self.sessions.take(&id, asker.full, node, now);
        }
        Ok(response.into())
    }

    /// Page `page` of `user`'s files; a session carries the paging on
    /// while there is more than one page.
    pub(crate) fn page(
        &self,
        node: &'static str,
        asker: &Asker<'_>,
        user: String,
        page: usize,
        sessionid: Option<&str>,
        now: Instant,
    ) -> Result<Outcome, Refusal> {
        let files = self.store.user_files(&user).map_err(storage_failure)?;
        // An admin looking at a user sees their usage above their files.
        let usage = match node == admin::USER.node {
            true => user::usage_fields(self, &user)?,
            false => Vec::new(),
        };
        let (page, form, actions) = user::files_page(self, &user, &files, page, usage);
        if actions.is_empty() {
            return Ok(CommandResponse::completed(node, Some(form)).into());
        }
        let stage = Stage::Page { user, page };
        match sessionid {
            None => self.open(node, asker, stage, now, |id| {
                Ok(CommandResponse::executing(node, id, actions, form))
            }),
            Some(id) => {
                self.sessions
                    .resume(id.to_owned(), asker.full, asker.bare, node, stage, now);
                Ok(CommandResponse::executing(node, id, actions, form).into())
            }
        }
    }

    /// Puts session `id` back at `stage`, for the next stage of `node`.
    pub(crate) fn resume(
        &self,
        id: &str,
        asker: &Asker<'_>,
        node: &'static str,
        stage: Stage,
        now: Instant,
    ) {
        self.sessions
            .resume(id.to_owned(), asker.full, asker.bare, node, stage, now);
    }

    /// The download URL of `file`.
    pub(crate) fn url_of(&self, file: &FileRecord) -> String {
        format!(
            "{}/file/{}/{}",
            self.public_url,
            file.id,
            encode_filename(&file.filename)
        )
    }

    /// The file a URL of this service names, if it is one.
    pub(crate) fn file_of_url(&self, url: &str) -> Option<FileId> {
        crate::relay::request::file_of_url(url, &self.file_url_prefix).map(|(id, _)| id)
    }
}

fn session_error(error: SessionError) -> Refusal {
    let specific = match error {
        SessionError::Expired => Specific::SessionExpired,
        SessionError::Unknown | SessionError::OtherNode => Specific::BadSessionid,
    };
    Box::new(adhoc::error(
        ErrorType::Modify,
        DefinedCondition::BadRequest,
        Some(specific),
        &error.to_string(),
    ))
}

pub(crate) fn cancel(condition: DefinedCondition, text: &str) -> Refusal {
    Box::new(StanzaError::new(ErrorType::Cancel, condition, "en", text))
}

pub(crate) fn internal(text: &str) -> Refusal {
    Box::new(StanzaError::new(
        ErrorType::Wait,
        DefinedCondition::InternalServerError,
        "en",
        text,
    ))
}

/// A store failure, logged; the requester learns only that it failed.
pub(crate) fn storage_failure(error: StorageError) -> Refusal {
    tracing::warn!(%error, "command failed: storage");
    internal("The store failed; try again later")
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use minidom::Element;
    use xmpp_parsers::data_forms::{DataForm, DataFormType, Field};

    use super::*;
    use crate::config::Config;
    use crate::storage::test_support::{data, service_store_in, slot_for, upload, NOW};

    /// Stands in for the relay: notes the deleted files.
    #[derive(Default)]
    struct Noted(Mutex<Vec<FileId>>);

    impl RelayControl for Noted {
        async fn file_deleted(&self, file: FileId) {
            self.0.lock().unwrap().push(file);
        }

        fn pending(&self) -> PendingRelays {
            PendingRelays {
                relays: 2,
                deliveries: 3,
                held: 1,
            }
        }
    }

    struct Fixture {
        commands: Commands<Noted>,
        relay: Arc<Noted>,
        store: Store,
        _dir: tempfile::TempDir,
    }

    const ALICE: &str = "alice@example.org/phone";
    const BOB: &str = "bob@example.org/laptop";
    const OPS: &str = "ops@example.org/desk";

    /// Commands of `upload.example.org`; `ops@example.org` is the admin.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(dir.path());
        config.admins = vec!["Ops@example.org".parse().unwrap()];
        let store = service_store_in(dir.path());
        let slots = SlotService::new(&config, store.clone());
        let relay = Arc::new(Noted::default());
        Fixture {
            commands: Commands::new(
                &config,
                store.clone(),
                slots,
                relay.clone(),
                LinkState::default(),
            ),
            relay,
            store,
            _dir: dir,
        }
    }

    impl Fixture {
        fn upload(&self, user: &str, size: usize) -> FileRecord {
            upload(
                &self.store,
                &slot_for(user, size as u64),
                &data(size),
                unix_far(),
            )
        }

        async fn run(
            &self,
            who: &str,
            node: &str,
            sessionid: Option<&str>,
            action: Action,
            fields: Option<Vec<Field>>,
        ) -> Result<Element, StanzaError> {
            let request = CommandRequest {
                node: node.into(),
                sessionid: sessionid.map(str::to_owned),
                action,
                form: fields.map(|fields| DataForm {
                    type_: DataFormType::Submit,
                    title: None,
                    instructions: None,
                    fields,
                }),
            };
            let asker: Jid = who.parse().unwrap();
            self.commands
                .execute(&asker, request)
                .await
                .map(Element::from)
        }

        async fn start(&self, who: &str, node: &str) -> Result<Element, StanzaError> {
            self.run(who, node, None, Action::Execute, None).await
        }
    }

    fn unix_far() -> u64 {
        NOW + 1_000_000_000
    }

    fn condition(error: StanzaError) -> (DefinedCondition, String) {
        let text = error.texts.values().next().cloned().unwrap_or_default();
        (error.defined_condition, text)
    }

    fn field(command: &Element, var: &str) -> Option<String> {
        let form = command.get_child("x", xmpp_parsers::ns::DATA_FORMS)?;
        form.children()
            .find(|f| f.is("field", xmpp_parsers::ns::DATA_FORMS) && f.attr("var") == Some(var))
            .map(|f| f.children().map(Element::text).collect())
    }

    fn rows(command: &Element) -> Vec<String> {
        let form = command
            .get_child("x", xmpp_parsers::ns::DATA_FORMS)
            .unwrap();
        form.children()
            .filter(|c| c.is("item", xmpp_parsers::ns::DATA_FORMS))
            .map(|item| {
                item.children()
                    .find(|f| f.attr("var") == Some("url"))
                    .unwrap()
                    .children()
                    .next()
                    .unwrap()
                    .text()
            })
            .collect()
    }

    fn nodes(listed: Vec<ListedCommand>) -> Vec<&'static str> {
        listed.iter().map(|l| l.node).collect()
    }

    #[test]
    fn each_asker_sees_only_what_they_may_run() {
        let f = fixture();
        let user = ["usage", "files", "delete"];
        assert_eq!(nodes(f.commands.listed(&ALICE.parse().unwrap())), user);
        let admin = nodes(f.commands.listed(&OPS.parse().unwrap()));
        assert_eq!(admin.len(), 9, "{admin:?}");
        assert!(nodes(f.commands.listed(&"eve@evil.example/x".parse().unwrap())).is_empty());
        assert!(nodes(f.commands.listed(&"example.org".parse().unwrap())).is_empty());
    }

    #[tokio::test]
    async fn unknown_nodes_and_admin_nodes_of_non_admins_are_refused() {
        let f = fixture();
        let unknown = f.start(ALICE, "admin/nope").await.unwrap_err();
        assert_eq!(condition(unknown).0, DefinedCondition::ItemNotFound);
        for node in ["admin/stats", "admin/erase-user", "admin/pause"] {
            let refused = f.start(ALICE, node).await.unwrap_err();
            assert_eq!(condition(refused).0, DefinedCondition::Forbidden, "{node}");
        }
        let stranger = f.start("eve@evil.example/x", "usage").await.unwrap_err();
        assert_eq!(condition(stranger).0, DefinedCondition::Forbidden);
    }

    #[tokio::test]
    async fn usage_counts_the_users_files_and_states_the_limits() {
        let f = fixture();
        f.upload("alice@example.org", 10);
        f.upload("alice@example.org", 20);
        f.upload("bob@example.org", 30);
        let usage = f.start(ALICE, "usage").await.unwrap();
        assert_eq!(usage.attr("status"), Some("completed"));
        assert_eq!(field(&usage, "stored-bytes").as_deref(), Some("30"));
        assert_eq!(field(&usage, "stored-files").as_deref(), Some("2"));
        assert_eq!(
            field(&usage, "max-file-size-bytes").as_deref(),
            Some("1000")
        );
    }

    #[tokio::test]
    async fn files_are_paged_by_fifty_and_the_session_is_the_owners() {
        let f = fixture();
        for _ in 0..120 {
            f.upload("alice@example.org", 1);
        }
        f.upload("bob@example.org", 1);
        let first = f.start(ALICE, "files").await.unwrap();
        assert_eq!(first.attr("status"), Some("executing"));
        assert_eq!(rows(&first).len(), 50);
        let id = first.attr("sessionid").unwrap().to_owned();
        let stolen = f
            .run(BOB, "files", Some(&id), Action::Next, None)
            .await
            .unwrap_err();
        assert_eq!(condition(stolen).0, DefinedCondition::BadRequest);
        let second = f
            .run(ALICE, "files", Some(&id), Action::Next, None)
            .await
            .unwrap();
        let third = f
            .run(ALICE, "files", Some(&id), Action::Next, None)
            .await
            .unwrap();
        assert_eq!(rows(&third).len(), 20);
        let back = f
            .run(ALICE, "files", Some(&id), Action::Prev, None)
            .await
            .unwrap();
        assert_eq!(rows(&back), rows(&second));
        let mut all: Vec<String> = [&first, &second, &third]
            .iter()
            .flat_map(|p| rows(p))
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 120, "every file once, none of bob's");
        let done = f
            .run(ALICE, "files", Some(&id), Action::Complete, None)
            .await
            .unwrap();
        assert_eq!(done.attr("status"), Some("completed"));
        let over = f
            .run(ALICE, "files", Some(&id), Action::Next, None)
            .await
            .unwrap_err();
        assert_eq!(condition(over).0, DefinedCondition::BadRequest);
    }

    #[tokio::test]
    async fn a_user_deletes_their_own_file_and_only_theirs() {
        let f = fixture();
        let mine = f.upload("alice@example.org", 10);
        let bobs = f.upload("bob@example.org", 10);
        let form = f.start(ALICE, "delete").await.unwrap();
        let id = form.attr("sessionid").unwrap().to_owned();
        // Bob's file by URL: answered as if it did not exist.
        let bobs_url = f.commands.inner.url_of(&bobs);
        let refused = f
            .run(
                ALICE,
                "delete",
                Some(&id),
                Action::Complete,
                Some(vec![Field::text_single("url", &bobs_url)]),
            )
            .await
            .unwrap_err();
        assert_eq!(
            condition(refused),
            (DefinedCondition::ItemNotFound, "No such file".into())
        );
        assert!(f.store.file(&bobs.id).unwrap().is_some());
        // A bad form names its field, and the stage stays open.
        let bad = f
            .run(
                ALICE,
                "delete",
                Some(&id),
                Action::Complete,
                Some(vec![Field::text_single("url", "gopher://x")]),
            )
            .await
            .unwrap_err();
        assert!(condition(bad).1.contains("'url'"));
        let huge = f
            .run(
                ALICE,
                "delete",
                Some(&id),
                Action::Complete,
                Some(vec![Field::text_single("file", &"f".repeat(100_000))]),
            )
            .await
            .unwrap_err();
        assert!(condition(huge).1.contains("'file' is longer"));
        let done = f
            .run(
                ALICE,
                "delete",
                Some(&id),
                Action::Complete,
                Some(vec![Field::text_single("file", &mine.id.to_string())]),
            )
            .await
            .unwrap();
        assert_eq!(done.attr("status"), Some("completed"));
        assert_eq!(f.store.file(&mine.id).unwrap(), None);
        assert_eq!(
            f.store
                .usage("alice@example.org", NOW)
                .unwrap()
                .stored_bytes,
            0
        );
        assert_eq!(
            *f.relay.0.lock().unwrap(),
            [mine.id],
            "its relays are cancelled"
        );
    }

    #[tokio::test]
    async fn an_admin_erases_a_user_only_after_confirming() {
        let f = fixture();
        let file = f.upload("alice@example.org", 10);
        let ask = f.start(OPS, "admin/erase-user").await.unwrap();
        let id = ask.attr("sessionid").unwrap().to_owned();
        let bad = f
            .run(
                OPS,
                "admin/erase-user",
                Some(&id),
                Action::Next,
                Some(vec![Field::text_single("user", "example.org")]),
            )
            .await
            .unwrap_err();
        assert!(condition(bad).1.contains("'user'"));
        let confirm = f
            .run(
                OPS,
                "admin/erase-user",
                Some(&id),
                Action::Next,
                Some(vec![Field::text_single("user", "alice@example.org")]),
            )
            .await
            .unwrap();
        assert_eq!(confirm.attr("status"), Some("executing"));
        assert!(
            f.store.file(&file.id).unwrap().is_some(),
            "not before confirming"
        );
        let done = f
            .run(
                OPS,
                "admin/erase-user",
                Some(&id),
                Action::Complete,
                Some(vec![Field::text_single("confirm", "true")]),
            )
            .await
            .unwrap();
        assert_eq!(done.attr("status"), Some("completed"));
        assert_eq!(done.attr("sessionid"), Some(id.as_str()));
        assert_eq!(f.store.file(&file.id).unwrap(), None);
        assert_eq!(*f.relay.0.lock().unwrap(), [file.id]);
    }

    #[tokio::test]
    async fn pause_refuses_slots_until_resume_and_stats_say_so() {
        let f = fixture();
        f.start(OPS, "admin/pause").await.unwrap();
        assert!(f.commands.inner.slots.is_paused());
        let stats = f.start(OPS, "admin/stats").await.unwrap();
        assert_eq!(field(&stats, "uploads-paused").as_deref(), Some("true"));
        assert_eq!(field(&stats, "relays-pending").as_deref(), Some("2"));
        assert_eq!(field(&stats, "deliveries-held").as_deref(), Some("1"));
        assert_eq!(field(&stats, "link").as_deref(), Some("down"));
        f.start(OPS, "admin/resume").await.unwrap();
        assert!(!f.commands.inner.slots.is_paused());
    }

    #[tokio::test]
    async fn an_admin_sees_a_users_usage_and_files() {
        let f = fixture();
        let file = f.upload("alice@example.org", 10);
        let ask = f.start(OPS, "admin/user").await.unwrap();
        let id = ask.attr("sessionid").unwrap().to_owned();
        let user = Field::text_single("user", "alice@example.org");
        let shown = f
            .run(OPS, "admin/user", Some(&id), Action::Next, Some(vec![user]))
            .await
            .unwrap();
        assert_eq!(shown.attr("status"), Some("completed"), "one page");
        assert_eq!(field(&shown, "stored-bytes").as_deref(), Some("10"));
        assert_eq!(rows(&shown), [f.commands.inner.url_of(&file)]);
    }

    #[tokio::test]
    async fn a_cancelled_session_is_over() {
        let f = fixture();
        f.upload("alice@example.org", 10);
        let form = f.start(ALICE, "delete").await.unwrap();
        let id = form.attr("sessionid").unwrap().to_owned();
        let cancelled = f
            .run(ALICE, "delete", Some(&id), Action::Cancel, None)
            .await
            .unwrap();
        assert_eq!(cancelled.attr("status"), Some("canceled"));
        let again = f
            .run(ALICE, "delete", Some(&id), Action::Complete, None)
            .await
            .unwrap_err();
        assert_eq!(condition(again).0, DefinedCondition::BadRequest);
        let no_session = f
            .run(ALICE, "delete", None, Action::Next, None)
            .await
            .unwrap_err();
        assert_eq!(condition(no_session).0, DefinedCondition::BadRequest);
    }
}
