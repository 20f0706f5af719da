//! The pure wire codec: framing of tagged messages, the untyped startup
//! packets, lazy views of the few messages the proxy acts on, encoders for
//! the messages it writes itself, the console's SASL body check ([`sasl`];
//! pgwire frames the console's other messages), and the SQLSTATEs it
//! answers with ([`SqlState`], [`ClientFacing`]).
//!
//! It owns byte layout only. It knows nothing of sockets, tasks, config or
//! SQL: callers pass in the buffer and the size cap, and get back frames as
//! the `Bytes` they arrived in (no copy) or typed views borrowed from them.

mod frame;
mod messages;
pub mod sasl;
mod sqlstate;
mod startup;

pub use frame::{Frame, FrameHeader, peek_header};
pub use messages::{
    BackendKeyData, ErrorFields, ParameterStatus, ParseView, QueryView, encode_authentication,
    encode_backend_key_data, encode_bind_text, encode_close, encode_command_complete,
    encode_error_response, encode_execute, encode_parameter_status, encode_parse,
    encode_parse_with, encode_password_message, encode_query, encode_query_with,
    encode_ready_for_query, encode_sasl_initial, encode_sync, encode_terminate,
    ready_for_query_status,
};
pub use sqlstate::{ClientFacing, SqlState, encode_client_error};
pub use startup::{
    CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, MAX_AUTH_FRAME, MAX_STARTUP_PACKET, PROTOCOL_3_0,
    SSL_REQUEST_CODE, StartupMessage, StartupPacket, decode_startup, encode_cancel_request,
    escape_option_value,
};

/// Frame tags the proxy looks at (client and server namespaces overlap; the
/// side a frame came from says which one applies).
pub mod tag {
    // Client -> server.
    pub const QUERY: u8 = b'Q';
    pub const PARSE: u8 = b'P';
    pub const BIND: u8 = b'B';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const CLOSE: u8 = b'C';
    pub const SYNC: u8 = b'S';
    pub const FLUSH: u8 = b'H';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const TERMINATE: u8 = b'X';
    /// PasswordMessage, SASLInitialResponse, SASLResponse.
    pub const PASSWORD: u8 = b'p';
    // Server -> client.
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const BIND_COMPLETE: u8 = b'2';
    pub const CLOSE_COMPLETE: u8 = b'3';
    pub const ROW_DESCRIPTION: u8 = b'T';
    pub const DATA_ROW: u8 = b'D';
    pub const NO_DATA: u8 = b'n';
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const EMPTY_QUERY: u8 = b'I';
    pub const PORTAL_SUSPENDED: u8 = b's';
    /// The Authentication family; code 0 in its body is AuthenticationOk.
    pub const AUTHENTICATION: u8 = b'R';
}

/// What can be wrong with bytes on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid message length {len} for message type '{}'", char::from(*tag))]
    FrameTooShort { tag: u8, len: i32 },
    #[error(
        "message of type '{}' is {len} bytes, over the limit of {max} bytes",
        char::from(*tag)
    )]
    FrameTooLarge { tag: u8, len: usize, max: usize },
    #[error("invalid startup packet length {len}")]
    StartupLength { len: i32 },
    #[error("unsupported frontend protocol or request code {code}")]
    UnknownStartupCode { code: i32 },
    #[error("malformed {what} message")]
    Malformed { what: &'static str },
}
