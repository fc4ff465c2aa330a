//! The only unsafe code of the crate: libpam's C interface. The two
//! functions libpam calls (`pam_sm_authenticate`, `pam_sm_setcred`), the
//! three libpam functions the module calls (`pam_get_user`, `pam_get_item`,
//! `pam_syslog`) and the conversation, wrapped in [`Handle`], a safe
//! [`Host`] valid for one call. No panic leaves this module: each entry
//! point catches unwinding and answers PAM_SYSTEM_ERR.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::{self, NonNull};

use crate::host::{ConversationError, Host, Item, Level, Verdict};

const PAM_SUCCESS: c_int = 0;
const PAM_SYSTEM_ERR: c_int = 4;
const PAM_AUTH_ERR: c_int = 7;
const PAM_CONV_ERR: c_int = 19;

const PAM_SERVICE: c_int = 1;
const PAM_TTY: c_int = 3;
const PAM_RHOST: c_int = 4;
const PAM_CONV: c_int = 5;
const PAM_RUSER: c_int = 8;

const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_TEXT_INFO: c_int = 4;

const PAM_SILENT: c_int = 0x8000;

const LOG_ERR: c_int = 3;
const LOG_WARNING: c_int = 4;
const LOG_INFO: c_int = 6;

/// libpam's opaque `pam_handle_t`.
#[repr(C)]
pub struct PamHandle {
    _opaque: [u8; 0],
}

/// `struct pam_message`.
#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

/// `struct pam_response`, allocated by the application with malloc.
#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

/// The application's conversation function.
type ConvFn = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

/// `struct pam_conv`.
#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_get_user(pamh: *mut PamHandle, user: *mut *const c_char, prompt: *const c_char)
    -> c_int;
    fn pam_get_item(pamh: *const PamHandle, item_type: c_int, item: *mut *const c_void) -> c_int;
    fn pam_syslog(pamh: *const PamHandle, priority: c_int, fmt: *const c_char, ...);
}

unsafe extern "C" {
    /// The C library's `free`, for the responses the conversation allocated.
    fn free(ptr: *mut c_void);
}

/// The PAM handle of one call into the module; it must not outlive the call.
pub struct Handle<'call> {
    raw: NonNull<PamHandle>,
    _call: PhantomData<&'call mut PamHandle>,
}

impl Handle<'_> {
    /// Reads a raw item pointer (a string or the conversation).
    fn raw_item(&self, item_type: c_int) -> Option<NonNull<c_void>> {
        let mut item: *const c_void = ptr::null();
        // SAFETY: `raw` is the live handle libpam passed to this call, and
        // `item` is a valid place for libpam to store a pointer it owns.
        let rc = unsafe { pam_get_item(self.raw.as_ptr(), item_type, &mut item) };
        if rc == PAM_SUCCESS {
            NonNull::new(item.cast_mut())
        } else {
            None
        }
    }

    /// Runs the conversation with one message.
    fn converse(&self, style: c_int, text: &str) -> Result<(), ConversationError> {
        let conv = self
            .raw_item(PAM_CONV)
            .ok_or(ConversationError(PAM_CONV_ERR))?
            .cast::<PamConv>();
        // SAFETY: the PAM_CONV item is a `struct pam_conv` owned by libpam,
        // valid while the handle is, and only read here.
        let PamConv { conv, appdata_ptr } = unsafe { conv.read() };
        let conv = conv.ok_or(ConversationError(PAM_CONV_ERR))?;
        let text =
            CString::new(text.replace('\0', "")).map_err(|_| ConversationError(PAM_CONV_ERR))?;
        let message = PamMessage {
            msg_style: style,
            msg: text.as_ptr(),
        };
        // One pointer to one message: both the Linux-PAM (array of
        // pointers) and the Solaris (pointer to array) reading agree.
        let mut messages: [*const PamMessage; 1] = [&message];
        let mut response: *mut PamResponse = ptr::null_mut();
        // SAFETY: the conversation is the application's, called as PAM
        // specifies: one valid message (`text` and `message` outlive the
        // call), a valid place for the response pointer, the application's
        // own appdata pointer.
        let rc = unsafe { conv(1, messages.as_mut_ptr(), &mut response, appdata_ptr) };
        if !response.is_null() {
            // SAFETY: a non-null response is an array of `num_msg` (1)
            // responses the application allocated with malloc, whose
            // ownership passes to the module; its `resp` string likewise.
            // Both are freed once, here, and not used afterwards.
            unsafe {
                let answer = (*response).resp;
                if !answer.is_null() {
                    free(answer.cast());
                }
                free(response.cast());
            }
        }
        if rc == PAM_SUCCESS {
            Ok(())
        } else {
            Err(ConversationError(rc))
        }
    }
}

impl Host for Handle<'_> {
    fn user(&self) -> Option<String> {
        let mut user: *const c_char = ptr::null();
        // SAFETY: `raw` is the live handle; `user` is a valid place for the
        // pointer; a null prompt asks for libpam's default prompt.
        let rc = unsafe { pam_get_user(self.raw.as_ptr(), &mut user, ptr::null()) };
        if rc != PAM_SUCCESS || user.is_null() {
            return None;
        }
        // SAFETY: on success libpam returns a NUL-terminated string it owns,
        // valid until the item changes; it is copied at once.
        let user = unsafe { CStr::from_ptr(user) };
        user.to_str().ok().map(str::to_owned)
    }

    fn item(&self, item: Item) -> Option<String> {
        let item_type = match item {
            Item::Service => PAM_SERVICE,
            Item::Tty => PAM_TTY,
            Item::Rhost => PAM_RHOST,
            Item::Ruser => PAM_RUSER,
        };
        let value = self.raw_item(item_type)?.cast::<c_char>();
        // SAFETY: these items are NUL-terminated strings owned by libpam,
        // valid while the handle is; copied at once.
        let value = unsafe { CStr::from_ptr(value.as_ptr()) };
        value.to_str().ok().map(str::to_owned)
    }

    fn show(&self, text: &str) -> Result<(), ConversationError> {
        self.converse(PAM_TEXT_INFO, text)
    }

    fn wait_for_enter(&self, text: &str) -> Result<(), ConversationError> {
        self.converse(PAM_PROMPT_ECHO_ON, text)
    }

    fn log(&self, level: Level, text: &str) {
        let priority = match level {
            Level::Error => LOG_ERR,
            Level::Warning => LOG_WARNING,
            Level::Info => LOG_INFO,
        };
        let Ok(text) = CString::new(text.replace('\0', "")) else {
            return;
        };
        // SAFETY: `raw` is the live handle; the format is a constant "%s"
        // with exactly one matching NUL-terminated string argument, so no
        // text of ours is ever read as a format.
        unsafe { pam_syslog(self.raw.as_ptr(), priority, c"%s".as_ptr(), text.as_ptr()) };
    }
}

/// The module arguments as strings (invalid UTF-8 is replaced).
///
/// # Safety
/// `argv` holds `argc` NUL-terminated strings (or is null with `argc` 0).
unsafe fn arguments(argc: c_int, argv: *const *const c_char) -> Vec<String> {
    let count = usize::try_from(argc).unwrap_or(0);
    if argv.is_null() {
        return Vec::new();
    }
    (0..count)
        .filter_map(|index| {
            // SAFETY: index < argc, the length of `argv` (caller's contract).
            let arg = unsafe { *argv.add(index) };
            // SAFETY: a non-null entry is a NUL-terminated string libpam owns
            // for the call; copied at once.
            (!arg.is_null()).then(|| {
                unsafe { CStr::from_ptr(arg) }
                    .to_string_lossy()
                    .into_owned()
            })
        })
        .collect()
}

fn code(verdict: Verdict) -> c_int {
    match verdict {
        Verdict::Success => PAM_SUCCESS,
        Verdict::AuthError => PAM_AUTH_ERR,
        Verdict::SystemError => PAM_SYSTEM_ERR,
    }
}

/// libpam's `auth` entry point: asks the user's device (crate docs).
///
/// # Safety
/// Called by libpam only: `pamh` is the live handle of this call and `argv`
/// holds `argc` NUL-terminated module arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_authenticate(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let Some(raw) = NonNull::new(pamh) else {
            return Verdict::SystemError;
        };
        let handle = Handle {
            raw,
            _call: PhantomData,
        };
        // SAFETY: libpam's contract for this entry point (see # Safety).
        let args = unsafe { arguments(argc, argv) };
        crate::authenticate(&handle, flags & PAM_SILENT != 0, &args)
    }));
    code(outcome.unwrap_or(Verdict::SystemError))
}

/// libpam's `setcred` entry point: the module sets no credentials.
///
/// # Safety
/// Called by libpam only; no argument is read.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_setcred(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PAM_SUCCESS
}
