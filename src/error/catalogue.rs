//! The error catalogue: every code larkstack answers, with its default message and HTTP status,
//! one table per API family. Nothing outside this module can make a `FeishuError` from a number
//! (`FeishuError::new` is private to `crate::error`): code refers to an entry and may add details
//! (a more specific message, field violations). The one exception is `injected`, the error a
//! control-API fault rule asks for, whose code the test author chooses.
//!
//! A failure of larkstack's own infrastructure (database, Redis) is not in these tables: it is
//! `crate::envelope::InfraError`, answered as `ServerErr::Internal`.

use std::borrow::Cow;

use super::FeishuError;

/// One row of the catalogue, as `all()` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub family: &'static str,
    pub name: &'static str,
    pub code: i64,
    pub http_status: u16,
    pub msg: &'static str,
}

macro_rules! errors {
    ($(#[$doc:meta])* $family:ident { $($(#[$vdoc:meta])* $name:ident = ($code:expr, $status:expr, $msg:expr),)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $family {
            $($(#[$vdoc])* $name,)*
        }

        impl $family {
            pub const ALL: &'static [$family] = &[$($family::$name,)*];

            pub const fn entry(self) -> Entry {
                match self {
                    $($family::$name => Entry {
                        family: stringify!($family),
                        name: stringify!($name),
                        code: $code,
                        http_status: $status,
                        msg: $msg,
                    },)*
                }
            }

            pub const fn code(self) -> i64 {
                self.entry().code
            }

            /// The error with the entry's default message.
            pub fn err(self) -> FeishuError {
                let e = self.entry();
                FeishuError::new(e.code, e.msg).with_status(e.http_status)
            }

            /// The error with a more specific message than the entry's default.
            pub fn with_msg(self, msg: impl Into<Cow<'static, str>>) -> FeishuError {
                let e = self.entry();
                FeishuError::new(e.code, msg).with_status(e.http_status)
            }
        }

        impl From<$family> for FeishuError {
            fn from(e: $family) -> FeishuError {
                e.err()
            }
        }
    };
}

errors! {
    /// The Open Platform gateway: the bearer check, scopes and per-app rate limits (HTTP 400).
    GatewayErr {
        RateLimited = (99991400, 400, "request trigger frequency limit"),
        /// The app is gone from the directory, or not installed or disabled in the token's tenant.
        AppUnavailable = (99991662, 400, "The app is not installed in the tenant, or the tenant has disabled it."),
        MissingToken = (99991661, 400, "Missing access token for authorization. Please make a request with token attached."),
        InvalidToken = (99991663, 400, "Invalid access token for authorization. Please make a request with token attached."),
        /// The message names the scopes: see `FeishuError::scope_missing`.
        ScopeMissing = (99991672, 400, "Access denied. One of the following scopes is required."),
        /// A query or body field outside its documented rules, on the families that validate at
        /// the gateway (contacts, application).
        FieldValidation = (99992402, 400, "field validation failed"),
    }
}

errors! {
    /// The token endpoints (`/open-apis/auth/v3/*`): failures answer HTTP 200 with the code at the top level.
    AuthErr {
        InvalidParam = (10003, 200, "invalid param"),
        /// A store app's `app_ticket` that is missing, unknown, expired, superseded or another
        /// app's (the Go SDK answers it with an `app_ticket/resend`); message: GUESS.
        AppTicketInvalid = (10012, 200, "app_ticket is invalid"),
        AppSecretInvalid = (10014, 200, "app secret invalid"),
    }
}

errors! {
    /// IM chats and members (`/open-apis/im/v1/chats*`), and the IM checks every IM endpoint shares.
    ChatErr {
        InvalidParam = (232001, 400, "Your request contains an invalid request parameter."),
        OnlyOwnerMayEdit = (232002, 400, "Only the chat owner or chat managers can edit the chat information."),
        AppNotExist = (232004, 400, "Such an app does NOT exist."),
        InvalidChatId = (232006, 400, "Your request specifies a chat_id which is invalid."),
        UnsupportedChat = (232008, 400, "The chat mode or chat type of this chat is not supported for this operation."),
        ChatDissolved = (232009, 400, "Your request specifies a chat which has already been dissolved."),
        OtherTenant = (232010, 400, "Operator and chat can NOT be in different tenants."),
        NotInChat = (232011, 400, "Operator can NOT be out of the chat."),
        OwnerNotInChat = (232012, 400, "The new owner must be in the chat."),
        MemberLimit = (232013, 400, "The number of members in the chat reaches the limit."),
        BasicFieldsOnly = (232016, 400, "Operators who are not the owner or managers can only edit avatar, name, description and i18n_names."),
        NotOwner = (232017, 400, "The operator is neither the chat owner nor the chat creator with the scope."),
        /// Only fault injection produces it (docs/parity.md).
        RateLimited = (232019, 400, "The request has been rate limited."),
        PublicNameTooShort = (232020, 400, "Name can NOT be less than two characters for public chats."),
        BotNotFound = (232021, 400, "Bot can NOT be found."),
        UserResigned = (232022, 400, "User has already resigned."),
        ReviewFailed = (232023, 400, "Chat information review failed while updating the chat."),
        BotAbilityInactive = (232025, 400, "Bot ability is not activated."),
        PublicNameUsed = (232026, 400, "The name of the public chat has already been used."),
        NoValidMembers = (232027, 400, "There are no valid members in the id list."),
        ExternalIntoInternal = (232028, 400, "Users of another tenant can NOT be added to an internal chat."),
        InvalidUserId = (232030, 400, "Your request specifies a user_id which is invalid."),
        OwnerCrossTenant = (232031, 400, "The owner can NOT be transferred to a user of another tenant."),
        OwnerOtherTenant = (232032, 400, "The operator who will create the chat and the designated chat owner must be in the same tenant."),
        NoExternalAuthority = (232033, 400, "The operator or invited bots does NOT have the authority to manage external chats without the scope."),
        AppUnavailable = (232034, 400, "The app is unavailable or inactivated by the tenant."),
        NoLabelAuthority = (232037, 400, "The operator or invited bots does NOT have the authority to manage chat labels without the scope."),
        ManagersOwnerOnly = (232038, 400, "Only the chat owner can operate chat managers."),
        ManagerLimit = (232040, 400, "The number of chat managers reaches the limit."),
        PublicNameEmpty = (232042, 400, "Public group chat's name should not be empty."),
        UnavailableIds = (232043, 400, "Your request contains unavailable ids."),
        RestrictedModeNotAllowed = (232057, 400, "The operator tenant doesn't have the permission to use restricted mode."),
        BeingCreated = (232068, 400, "The group is being created, please wait a moment."),
        ExternalCannotBePublic = (232069, 400, "current chat type unsupported to set public."),
        JoinNeedsApproval = (232075, 400, "The public chat requires approval to join."),
        HideMemberCountNotAllowed = (232078, 400, "The operator tenant doesn't have the permission to use hide_member_count_setting."),
        HideMemberCountUnsupported = (232079, 400, "Chat type not supported by hide_member_count_setting."),
        P2pUnsupported = (232090, 400, "The operation is not supported for p2p chats."),
        PublicNotAllowed = (232091, 400, "Due to the security control requirements of this tenant, this tenant does not allow public group."),
        NoOcicAuthority = (232095, 400, "The operator does NOT have the authority to manage ocic type tag without the scope."),
    }
}

errors! {
    /// IM messages (`/open-apis/im/v1/messages*`).
    MessageErr {
        InvalidParam = (230001, 400, "Your request contains an invalid request parameter."),
        BotNotInChat = (230002, 400, "The bot can not be outside the group."),
        UserUnavailable = (230013, 400, "Bot has NO availability to this user."),
        /// The per-chat message budget is spent (never a Redis failure: that is `InfraError`).
        ChatRateLimited = (230020, 400, "This operation triggers the frequency limit."),
        /// Recall of the bot's own message after 24 h (or of another's after a year).
        RecallExpired = (230009, 400, "Message can only be recalled within one days."),
        Recalled = (230011, 400, "The message is recalled."),
        /// `read_users` of a message another sender sent.
        NotMessageSender = (230012, 400, "Bot is NOT the sender of the message."),
        ContentTooLong = (230025, 400, "The length of the message content reaches its limit."),
        /// An image or file message names a key another app (or tenant) uploaded.
        NotResourceOwner = (230017, 400, "Bot is NOT the owner of the resource."),
        /// The key was uploaded as another kind than the message type carries (avatar image, mp4 as a file).
        UploadTypeMismatch = (230055, 400, "The type of file upload does not match the type of message being sent."),
        RecallDenied = (230026, 400, "No permission to recall this message."),
        PatchExpired = (230031, 400, "Message can only be modified within 14 days after sending."),
        ReadStatusExpired = (230033, 400, "Get the reading status must be done within 7 days after the message is sent."),
        EditNotSender = (230071, 400, "The operator is not the sender of the message."),
        EditLimit = (230072, 400, "The message has reached the number of times it can be edited."),
        EditExpired = (230075, 400, "The message has exceeded the time limit for editing."),
        CardBuildFailed = (230099, 400, "Failed to create card content."),
    }
}

errors! {
    /// Delayed card updates (`POST /open-apis/interactive/v1/card/update`). GUESS codes
    /// (docs/parity.md): the page lists no code per token failure.
    CardErr {
        /// No such token, or one another app's card callback issued.
        TokenInvalid = (200830, 400, "The card update token is invalid."),
        TokenExpired = (200831, 400, "The card update token has expired (it is valid for 30 minutes)."),
        TokenUsedUp = (200832, 400, "The card update token has been used the maximum number of times."),
    }
}

errors! {
    /// IM images, files and message resources (`/open-apis/im/v1/images*`, `/files*`,
    /// `/messages/:message_id/resources/:file_key`); messages as on Feishu's pages.
    ResourceErr {
        InvalidParam = (234001, 400, "Invalid request param."),
        FileNotInMessage = (234003, 400, "File not in message."),
        AppNotInChat = (234004, 400, "App not in chat."),
        /// An unknown key (larkstack deletes nothing: a key it never issued).
        ResourceDeleted = (234005, 400, "Image has been deleted"),
        TooLarge = (234006, 400, "The file size exceed the max value."),
        BotAbilityInactive = (234007, 400, "App does not enable bot feature."),
        NotResourceSender = (234008, 400, "The app is not the resource sender"),
        EmptyFile = (234010, 400, "File's size can't be 0."),
        UnknownImageFormat = (234011, 400, "Can't regonnize the image format."),
        DownloadTooLarge = (234037, 400, "Downloaded file size exceeds limit."),
        ResolutionTooLarge = (234039, 400, "Image resolution exceeds limit."),
        /// The app's blob quota (`--blob-quota-bytes`) is spent: Feishu's "storage full" (docs/parity.md).
        StorageFull = (234042, 400, "Hybrid deployment tenant storage error, such as full storage space, please contact tenant administrator."),
        UnsupportedMessageType = (234043, 400, "Unsupported message type."),
    }
}

errors! {
    /// Message reactions (`/open-apis/im/v1/messages/:message_id/reactions*`).
    ReactionErr {
        InvalidEmoji = (231001, 400, "reaction type is invalid."),
        NoPermission = (231002, 400, "The operator has no permission to react on the specific message."),
        MessageNotFound = (231003, 400, "The message is not found, maybe not exist or deleted."),
        NotReactionOwner = (231007, 400, "The operator has no permission to delete this reaction."),
        NoAccess = (231008, 400, "The operator has no access to the message."),
        NotOfMessage = (231010, 400, "The reaction does not belong to the message."),
        InvalidReactionId = (231011, 400, "The request has an invalid reaction_id."),
        InvalidPageToken = (231012, 400, "The request has an invalid pageToken."),
        InvalidUserIdType = (231014, 400, "user_id_type is invalid."),
    }
}

errors! {
    /// Contacts (`/open-apis/contact/v3/users*`).
    ContactErr {
        /// The user is not one the app may see: another tenant's, outside the app's range, or none.
        NoUserAuthority = (41050, 400, "no user authority error"),
    }
}

errors! {
    /// A group's custom bot (`POST /open-apis/bot/v2/hook/{token}`): every refusal answers HTTP
    /// 200 with `{"code", "data": {}, "msg"}`, the messages as Feishu writes them.
    CustomBotErr {
        /// The body is not JSON, or a message field is missing or malformed.
        BadRequest = (9499, 200, "Bad Request"),
        /// No custom bot has this token (never had, removed, or its chat was disbanded).
        TokenInvalid = (19001, 200, "param invalid: incoming webhook access token invalid"),
        SignMismatch = (19021, 200, "sign match fail or timestamp is not within one hour from current time"),
        IpNotAllowed = (19022, 200, "Ip Not Allowed"),
        KeywordsNotFound = (19024, 200, "Key Words Not Found"),
        /// The bot's 100/min or 5/s budget is spent.
        RateLimited = (11232, 200, "frequency limited"),
    }
}

errors! {
    /// aPaaS approval tasks (`/open-apis/apaas/v1/*`).
    ApaasErr {
        ParamInvalid = (2320001, 400, "param is invalid"),
    }
}

errors! {
    /// The long connection (spec events.md §2): `POST /callback/ws/endpoint` answers HTTP 200
    /// with the code (and `data`), the WebSocket upgrade refuses with the HTTP status here and
    /// the `Handshake-*` headers.
    LongConnErr {
        /// Unknown app, wrong secret, or not a self-built app: a code every SDK gives up on
        /// (neither 1 nor 1000040343, which some retry forever). The live one (spec §2.1).
        AppInvalid = (1000040346, 200, "app_id is invalid"),
        /// The app holds 50 connections (handshake-status 514; the Python and Go SDKs stop).
        ConnLimit = (1000040350, 403, "exceed conn limit"),
        /// GUESS (docs/parity.md): a bad, expired or used ticket (handshake-status 514 with this
        /// autherrcode: the SDKs retry, which asks discovery for a fresh URL).
        TicketInvalid = (1000040351, 403, "ticket is invalid"),
    }
}

errors! {
    /// Replies made by the HTTP layer, not an endpoint: the code is the HTTP status. The messages
    /// here are defaults; call sites say what exactly was refused.
    TransportErr {
        MalformedRequest = (400, 400, "malformed HTTP request: the request line or a header could not be parsed"),
        BadPathParam = (400, 400, "invalid path parameter"),
        NotFound = (404, 404, "404 page not found"),
        MethodNotAllowed = (405, 405, "method not allowed"),
        BodyTooLarge = (413, 413, "request body too large"),
        UriTooLong = (414, 414, "request URI too long"),
        MisdirectedHost = (421, 421, "host is not served by this larkstack"),
        HeadTooLarge = (431, 431, "request header fields too large"),
        ServerBusy = (503, 503, "server busy: all connections are in use (--max-connections); retry later"),
    }
}

errors! {
    /// The larkstack control API (`/_larkstack/*`) and `/metrics`: the code is the HTTP status,
    /// the message says what was refused.
    ControlErr {
        BadRequest = (400, 400, "bad request"),
        Unauthorized = (401, 401, "the control API needs the admin token larkstack printed at start"),
        NotFound = (404, 404, "not found"),
        PayloadTooLarge = (413, 413, "payload too large"),
        Failed = (500, 500, "the operation failed"),
        Unavailable = (503, 503, "unavailable"),
    }
}

errors! {
    /// Server-side failures, Feishu's generic code 1. `Internal` is what an `InfraError` answers.
    ServerErr {
        Internal = (1, 500, "internal error"),
        /// Only fault injection produces it.
        Unavailable = (1, 503, "service unavailable"),
    }
}

/// The error a fault rule of the control API asks for: code, message and HTTP status are the
/// test author's choice, so they are not catalogue entries.
pub fn injected(code: i64, msg: String, http_status: u16) -> FeishuError {
    FeishuError::new(code, msg).with_status(http_status)
}

/// Every entry of the catalogue, family by family.
pub fn all() -> Vec<Entry> {
    let mut out = Vec::new();
    out.extend(GatewayErr::ALL.iter().map(|e| e.entry()));
    out.extend(AuthErr::ALL.iter().map(|e| e.entry()));
    out.extend(ChatErr::ALL.iter().map(|e| e.entry()));
    out.extend(MessageErr::ALL.iter().map(|e| e.entry()));
    out.extend(CardErr::ALL.iter().map(|e| e.entry()));
    out.extend(ResourceErr::ALL.iter().map(|e| e.entry()));
    out.extend(ReactionErr::ALL.iter().map(|e| e.entry()));
    out.extend(ContactErr::ALL.iter().map(|e| e.entry()));
    out.extend(CustomBotErr::ALL.iter().map(|e| e.entry()));
    out.extend(ApaasErr::ALL.iter().map(|e| e.entry()));
    out.extend(LongConnErr::ALL.iter().map(|e| e.entry()));
    out.extend(TransportErr::ALL.iter().map(|e| e.entry()));
    out.extend(ControlErr::ALL.iter().map(|e| e.entry()));
    out.extend(ServerErr::ALL.iter().map(|e| e.entry()));
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    use super::*;

    #[test]
    fn feishu_codes_are_unique_and_http_codes_match_their_status() {
        let mut seen: HashMap<i64, &str> = HashMap::new();
        for e in all() {
            assert!((200..=599).contains(&e.http_status), "{e:?}");
            assert!(!e.msg.is_empty(), "{e:?}");
            match e.family {
                // The code is the HTTP status.
                "TransportErr" | "ControlErr" => assert_eq!(e.code, i64::from(e.http_status), "{e:?}"),
                "ServerErr" => assert_eq!(e.code, 1, "{e:?}"),
                _ => {
                    // 9499 is the custom bot's own "Bad Request", Feishu's only 4-digit business code.
                    assert!(e.code >= 10000 || (e.family, e.code) == ("CustomBotErr", 9499), "{e:?}");
                    if let Some(other) = seen.insert(e.code, e.name) {
                        panic!("code {} is both {other} and {}", e.code, e.name);
                    }
                }
            }
        }
    }

    #[test]
    fn infrastructure_failures_answer_500_code_1() {
        let e = ServerErr::Internal.err();
        assert_eq!((e.code, e.http_status, &*e.msg), (1, 500, "internal error"));
    }

    /// The codes docs/parity.md says larkstack cannot produce are not in the catalogue, unless
    /// the row says fault injection produces it, or qualifies the code ("232033 on get/disband").
    #[test]
    fn parity_codes_larkstack_cannot_produce_are_not_in_the_catalogue() {
        let parity = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/parity.md")).expect("docs/parity.md");
        let codes: Vec<i64> = all().iter().map(|e| e.code).collect();
        let mut checked = 0;
        let mut in_table = false;
        for line in parity.lines() {
            if line.starts_with('#') || line.starts_with("Error codes") {
                in_table = line.contains("does not produce") || line.contains("cannot be triggered");
                continue;
            }
            let Some(row) = line.strip_prefix("| ").filter(|_| in_table) else { continue };
            let first = row.split(" | ").next().unwrap_or_default();
            if first.contains(" on ") || row.contains("ault injection produces it") {
                continue;
            }
            for code in code_literals(first) {
                checked += 1;
                let code: i64 = code.parse().unwrap();
                assert!(!codes.contains(&code), "docs/parity.md says larkstack cannot produce {code}, but the catalogue has it");
            }
        }
        assert!(checked >= 8, "found only {checked} codes larkstack cannot produce in docs/parity.md");
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src is readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }

    /// Integer literals of 5–8 digits in a line of code (outside string literals and comments):
    /// what a Feishu code looks like. Numbers written with `_` groups are quantities, not codes.
    fn code_literals(line: &str) -> Vec<String> {
        let code = line.split("//").next().unwrap_or_default();
        let mut bare = String::new();
        let mut in_string = false;
        let mut escaped = false;
        for c in code.chars() {
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
            } else if c == '"' {
                in_string = true;
                bare.push(' ');
            } else {
                bare.push(c);
            }
        }
        bare.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.chars().all(|c| c.is_ascii_digit()) && (5..=8).contains(&w.len()))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn code_literals_spots_a_code_passed_to_a_constructor() {
        assert_eq!(code_literals(r#"    FeishuError::new(232011, "x")"#), ["232011"]);
        assert_eq!(code_literals(r#"return Err(token_failure(10003, "invalid param"));"#), ["10003"]);
        assert_eq!(code_literals(r#"error(400, 99991663, "x") // 232001"#), ["99991663"]);
        assert!(code_literals(r#"description = "code 0, else 10003 or 10014", x_1 = 1_800_000"#).is_empty());
        assert!(code_literals("ChatErr::NotInChat.err()").is_empty());
    }

    /// Not Feishu codes: numbers of other meanings that happen to have 5–8 digits.
    const NOT_CODES: &[&str] = &[
        "65536", // SQLite's page cache size (KiB)
    ];

    /// No Feishu code is minted outside the catalogue: code refers to entries. (Tests may still
    /// compare a reply's code with a literal.)
    #[test]
    fn no_feishu_code_is_minted_outside_the_catalogue() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut minted = Vec::new();
        for file in files {
            if file.ends_with("error/catalogue.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("source is readable");
            // Unit tests at the end of a file may spell out codes they expect.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (n, line) in code.lines().enumerate() {
                for c in code_literals(line).into_iter().filter(|c| !NOT_CODES.contains(&c.as_str())) {
                    minted.push(format!("{}:{}: {c}", file.display(), n + 1));
                }
            }
        }
        assert!(minted.is_empty(), "Feishu codes minted outside src/error/catalogue.rs:\n{}", minted.join("\n"));
    }
}
