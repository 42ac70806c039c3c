//! IOCTL codes, built exactly like the Windows SDK's `CTL_CODE` macro.
//!
//! `CTL_CODE(DeviceType, Function, Method, Access) =
//!  (DeviceType << 16) | (Access << 14) | (Function << 2) | Method`.
//! The device type is in the vendor range (0x8000 and up) and the function numbers in the
//! vendor range (0x800 and up). Every code uses `METHOD_BUFFERED`: the I/O manager copies the
//! input into one system buffer and copies the output back from the same buffer, so the driver
//! never touches user addresses. Codes that change driver state require read and write access
//! to the handle; codes that only observe require read access.
//!
//! Every IOCTL is declared once, in the `declare_ioctls!` table below: its code (function
//! number and access), its input and output messages and the statuses its operation may fail
//! with. The code constants, the [`Ioctl`] marker types, [`IOCTLS`], [`Request`] and its
//! decoder are generated from that table.

use core::mem::size_of;

use crate::codec::{Decode, DecodeError, Encode};
use crate::layout::{
    ArmResponse, CreateRequest, CreateResponse, InfoResponse, QueryResponse, SetRequest,
    TimerRequest, WaitRequest, WaitResponse,
};
use crate::status::{
    NtStatus, STATUS_BUFFER_TOO_SMALL, STATUS_CANCELLED, STATUS_INFO_LENGTH_MISMATCH,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_HANDLE,
    STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND, STATUS_QUOTA_EXCEEDED, STATUS_REVISION_MISMATCH,
    STATUS_SUCCESS,
};

/// `METHOD_BUFFERED` (the only transfer method this driver uses).
pub const METHOD_BUFFERED: u32 = 0;
/// `FILE_ANY_ACCESS`.
pub const FILE_ANY_ACCESS: u32 = 0;
/// `FILE_READ_DATA` (the access bit `CTL_CODE` calls `FILE_READ_ACCESS`).
pub const FILE_READ_DATA: u32 = 0x0001;
/// `FILE_WRITE_DATA` (the access bit `CTL_CODE` calls `FILE_WRITE_ACCESS`).
pub const FILE_WRITE_DATA: u32 = 0x0002;

/// The ktimer device type, in the vendor range 0x8000..=0xFFFF.
pub const FILE_DEVICE_KTIMER: u32 = 0x8A7E;

/// The SDK's `CTL_CODE` as a `const fn`. Fields wider than their bit ranges are masked
/// (device type 16 bits, access 2 bits, function 12 bits, method 2 bits), as the macro's
/// result would be truncated by the 32-bit `DWORD` anyway.
#[must_use]
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    ((device_type & 0xFFFF) << 16)
        | ((access & 0x3) << 14)
        | ((function & 0xFFF) << 2)
        | (method & 0x3)
}

/// The device type field of an IOCTL code (`DEVICE_TYPE_FROM_CTL_CODE`).
#[must_use]
pub const fn device_type_of(code: u32) -> u32 {
    code >> 16
}

/// The function field of an IOCTL code.
#[must_use]
pub const fn function_of(code: u32) -> u32 {
    (code >> 2) & 0xFFF
}

/// The transfer method field of an IOCTL code (`METHOD_FROM_CTL_CODE`).
#[must_use]
pub const fn method_of(code: u32) -> u32 {
    code & 0x3
}

/// The required-access field of an IOCTL code.
#[must_use]
pub const fn access_of(code: u32) -> u32 {
    (code >> 14) & 0x3
}

const READ: u32 = FILE_READ_DATA;
const READ_WRITE: u32 = FILE_READ_DATA | FILE_WRITE_DATA;

/// An IOCTL of this ABI as a type, generated from its row in the declaration below
/// (`declare_ioctls!`): its code and its input and output messages. Generic code (the
/// driver's decoder [`Request::decode`], the app's client, the fuzzer) works from this.
pub trait Ioctl {
    /// The IOCTL code.
    const CODE: u32;
    /// The declaration's row: name, code, access, sizes, operation statuses.
    const SPEC: IoctlSpec;
    /// The input message ([`Empty`]: the IOCTL takes no input).
    type Input: Decode + Encode;
    /// The output message ([`Empty`]: the IOCTL returns no output).
    type Output: Decode + Encode;
}

/// One row of the declaration, as data ([`IOCTLS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoctlSpec {
    /// The code's name, as declared (`IOCTL_..._...`).
    pub name: &'static str,
    /// The IOCTL code (`METHOD_BUFFERED`).
    pub code: u32,
    /// The function number (0x800 and up).
    pub function: u32,
    /// The access bits the I/O manager requires of the handle.
    pub access: u32,
    /// Bytes of input (0: none).
    pub input_size: usize,
    /// Bytes of output (0: none; a wait response: without its records).
    pub output_size: usize,
    /// What the operation itself (step 7 of `docs/PROTOCOL.md`) may fail with.
    pub fails: &'static [NtStatus],
}

impl IoctlSpec {
    /// Whether `docs/PROTOCOL.md` documents `status` as a completion of this IOCTL: success;
    /// the checks every request of its shape gets (steps 2-6: a header's version, length and
    /// field checks if it takes input, the input-length check if it takes none, the output
    /// size if it returns output); `STATUS_CANCELLED` (a request after its handle's cleanup or
    /// unload, or a cancelled wait); and the operation's own [`IoctlSpec::fails`].
    #[must_use]
    pub const fn documents(&self, status: NtStatus) -> bool {
        let takes_header = self.input_size != 0;
        if status == STATUS_SUCCESS
            || status == STATUS_CANCELLED
            || status == STATUS_INFO_LENGTH_MISMATCH
            || (takes_header
                && (status == STATUS_BUFFER_TOO_SMALL
                    || status == STATUS_REVISION_MISMATCH
                    || status == STATUS_INVALID_PARAMETER))
            || (self.output_size != 0 && status == STATUS_BUFFER_TOO_SMALL)
        {
            return true;
        }
        let mut index = 0;
        while index < self.fails.len() {
            if self.fails[index] == status {
                return true;
            }
            index += 1;
        }
        false
    }
}

/// The input or output of an IOCTL that has none: exactly 0 bytes. Input given to an IOCTL
/// that takes none is refused with `STATUS_INFO_LENGTH_MISMATCH` (step 4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Empty;

impl Decode for Empty {
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.is_empty() {
            Ok(Self)
        } else {
            Err(DecodeError::TooLong {
                expected: 0,
                actual: bytes.len(),
            })
        }
    }
}

impl Encode for Empty {
    fn encode(&self, _out: &mut [u8]) -> Result<usize, DecodeError> {
        Ok(0)
    }
}

/// Code that runs for one declared IOCTL, chosen by its code at run time ([`visit`]): how
/// generic tools (the fuzzer's input generator and output checks) reach an IOCTL's types.
pub trait IoctlVisitor {
    /// What the visit returns.
    type Output;
    /// Runs for the IOCTL `I`.
    fn visit<I: Ioctl>(self) -> Self::Output;
}

/// Declares the IOCTLs, one row each, and generates from the rows: each code's constant,
/// one marker type per IOCTL implementing [`Ioctl`], [`IOCTLS`], [`ALL_CODES`],
/// [`name_of`], [`spec_of`], [`visit`], and [`Request`] with its decoder.
macro_rules! declare_ioctls {
    (
        device: $device:ident;
        $(
            $(#[$doc:meta])*
            $code:ident => $ty:ident {
                function: $function:expr,
                access: $access:expr,
                input: $input:ty,
                output: $output:ty,
                fails: [$($fail:expr),* $(,)?] $(,)?
            }
        )*
    ) => {
        $(
            $(#[$doc])*
            pub const $code: u32 = ctl_code($device, $function, METHOD_BUFFERED, $access);

            $(#[$doc])*
            #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
            pub struct $ty;

            impl Ioctl for $ty {
                const CODE: u32 = $code;
                const SPEC: IoctlSpec = IoctlSpec {
                    name: stringify!($code),
                    code: $code,
                    function: $function,
                    access: $access,
                    input_size: size_of::<$input>(),
                    output_size: size_of::<$output>(),
                    fails: &[$($fail),*],
                };
                type Input = $input;
                type Output = $output;
            }
        )*

        /// How many IOCTLs this ABI declares.
        pub const IOCTL_COUNT: usize = [$(stringify!($code)),*].len();

        /// Every IOCTL this ABI declares, in declaration order.
        pub const IOCTLS: [IoctlSpec; IOCTL_COUNT] = [$(<$ty as Ioctl>::SPEC),*];

        /// Every code this ABI defines, in declaration order, for tests and tools.
        pub const ALL_CODES: [u32; IOCTL_COUNT] = [$($code),*];

        /// The name of an IOCTL code of this ABI, for reports; `None` for any other code.
        #[must_use]
        pub const fn name_of(code: u32) -> Option<&'static str> {
            match code {
                $($code => Some(stringify!($code)),)*
                _ => None,
            }
        }

        /// The declaration of an IOCTL code of this ABI; `None` for any other code.
        #[must_use]
        pub const fn spec_of(code: u32) -> Option<&'static IoctlSpec> {
            match code {
                $($code => Some(&<$ty as Ioctl>::SPEC),)*
                _ => None,
            }
        }

        /// Runs `visitor` for the IOCTL with `code`; `None` for a code this ABI does not
        /// define.
        pub fn visit<V: IoctlVisitor>(code: u32, visitor: V) -> Option<V::Output> {
            match code {
                $($code => Some(visitor.visit::<$ty>()),)*
                _ => None,
            }
        }

        /// A decoded request: one variant per IOCTL, named as its marker type, holding its
        /// input, copied out of the input buffer.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Request {
            $(
                $(#[$doc])*
                $ty($input),
            )*
        }

        impl Request {
            /// Decodes an input buffer for `code`: the code, the header, the length and the
            /// field values (steps 1-5 of the order in `docs/PROTOCOL.md`, as far as they
            /// need only the input). Any IRQL; never panics; no allocation.
            ///
            /// # Errors
            /// The documented status of the first check that fails.
            pub fn decode(code: u32, input: &[u8]) -> Result<Self, NtStatus> {
                match code {
                    $(
                        $code => <$input as Decode>::decode(input)
                            .map(Self::$ty)
                            .map_err(DecodeError::status),
                    )*
                    _ => Err(STATUS_INVALID_DEVICE_REQUEST),
                }
            }

            /// The request's IOCTL code.
            #[must_use]
            pub const fn code(&self) -> u32 {
                match self {
                    $(Self::$ty(_) => $code,)*
                }
            }
        }
    };
}

// THE declaration: one row per IOCTL. Everything else about an IOCTL's code and messages
// follows from its row (docs/ADDING-AN-IOCTL.md). The messages themselves, their layout lines
// and their field checks are in `layout.rs` and `codec.rs`.
declare_ioctls! {
    device: FILE_DEVICE_KTIMER;

    /// Driver and ABI versions, clock increment and limits. No input; output
    /// [`crate::InfoResponse`].
    IOCTL_KTIMER_GET_INFO => GetInfo {
        function: 0x800,
        access: READ,
        input: Empty,
        output: InfoResponse,
        fails: [],
    }
    /// Create and arm a timer owned by the calling handle. Input [`crate::CreateRequest`];
    /// output [`crate::CreateResponse`].
    IOCTL_KTIMER_CREATE => Create {
        function: 0x801,
        access: READ_WRITE,
        input: CreateRequest,
        output: CreateResponse,
        fails: [STATUS_QUOTA_EXCEEDED, STATUS_INSUFFICIENT_RESOURCES],
    }
    /// Re-arm a timer with a new schedule. Input [`crate::SetRequest`]; output
    /// [`crate::ArmResponse`].
    IOCTL_KTIMER_SET => Set {
        function: 0x802,
        access: READ_WRITE,
        input: SetRequest,
        output: ArmResponse,
        fails: [STATUS_INVALID_HANDLE, STATUS_NOT_FOUND, STATUS_INVALID_PARAMETER],
    }
    /// Cancel a timer (it stays allocated and can be re-armed). Input
    /// [`crate::TimerRequest`]; output [`crate::ArmResponse`].
    IOCTL_KTIMER_CANCEL => Cancel {
        function: 0x803,
        access: READ_WRITE,
        input: TimerRequest,
        output: ArmResponse,
        fails: [STATUS_INVALID_HANDLE, STATUS_NOT_FOUND],
    }
    /// Read a timer's state and statistics. Input [`crate::TimerRequest`]; output
    /// [`crate::QueryResponse`].
    IOCTL_KTIMER_QUERY => Query {
        function: 0x804,
        access: READ,
        input: TimerRequest,
        output: QueryResponse,
        fails: [STATUS_INVALID_HANDLE, STATUS_NOT_FOUND],
    }
    /// Wait for expiry records of the calling handle's timers. Input
    /// [`crate::WaitRequest`]; output [`crate::WaitResponse`] followed by records. Pended
    /// until enough records are ready.
    IOCTL_KTIMER_WAIT => Wait {
        function: 0x805,
        access: READ,
        input: WaitRequest,
        output: WaitResponse,
        fails: [STATUS_INVALID_PARAMETER, STATUS_QUOTA_EXCEEDED],
    }
    /// Cancel and destroy a timer; its id becomes stale. Input [`crate::TimerRequest`]; no
    /// output.
    IOCTL_KTIMER_CLOSE => Close {
        function: 0x806,
        access: READ_WRITE,
        input: TimerRequest,
        output: Empty,
        fails: [STATUS_INVALID_HANDLE, STATUS_NOT_FOUND],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctl_code_matches_the_sdk_formula_on_known_values() {
        // IOCTL_DISK_GET_DRIVE_GEOMETRY = CTL_CODE(0x7, 0, METHOD_BUFFERED, FILE_ANY_ACCESS).
        assert_eq!(
            ctl_code(0x7, 0, METHOD_BUFFERED, FILE_ANY_ACCESS),
            0x0007_0000
        );
        // FSCTL_LOCK_VOLUME = CTL_CODE(0x9, 6, METHOD_BUFFERED, FILE_ANY_ACCESS).
        assert_eq!(
            ctl_code(0x9, 6, METHOD_BUFFERED, FILE_ANY_ACCESS),
            0x0009_0018
        );
        // IOCTL_STORAGE_EJECT_MEDIA = CTL_CODE(0x2d, 0x202, METHOD_BUFFERED, FILE_READ_ACCESS).
        assert_eq!(
            ctl_code(0x2D, 0x202, METHOD_BUFFERED, FILE_READ_DATA),
            0x002D_4808
        );
    }

    #[test]
    fn codes_decompose_into_their_fields() {
        for code in ALL_CODES {
            assert_eq!(device_type_of(code), FILE_DEVICE_KTIMER);
            assert_eq!(method_of(code), METHOD_BUFFERED);
            assert!(function_of(code) >= 0x800);
            assert!(name_of(code).is_some());
        }
        assert_eq!(
            access_of(IOCTL_KTIMER_CREATE),
            FILE_READ_DATA | FILE_WRITE_DATA
        );
        assert_eq!(access_of(IOCTL_KTIMER_QUERY), FILE_READ_DATA);
        assert_eq!(name_of(0x1234), None);
    }

    #[test]
    fn codes_are_the_values_protocol_md_documents() {
        assert_eq!(IOCTL_KTIMER_GET_INFO, 0x8A7E_6000);
        assert_eq!(IOCTL_KTIMER_CREATE, 0x8A7E_E004);
        assert_eq!(IOCTL_KTIMER_SET, 0x8A7E_E008);
        assert_eq!(IOCTL_KTIMER_CANCEL, 0x8A7E_E00C);
        assert_eq!(IOCTL_KTIMER_QUERY, 0x8A7E_6010);
        assert_eq!(IOCTL_KTIMER_WAIT, 0x8A7E_6014);
        assert_eq!(IOCTL_KTIMER_CLOSE, 0x8A7E_E018);
    }

    #[test]
    fn the_declaration_is_the_table_protocol_md_documents() {
        // The rows docs/PROTOCOL.md's table has (a derived driver's new IOCTLs come after).
        let rows: &[(&str, u32, u32, usize, usize)] = &[
            ("IOCTL_KTIMER_GET_INFO", 0x800, FILE_READ_DATA, 0, 72),
            ("IOCTL_KTIMER_CREATE", 0x801, READ_WRITE, 40, 16),
            ("IOCTL_KTIMER_SET", 0x802, READ_WRITE, 40, 16),
            ("IOCTL_KTIMER_CANCEL", 0x803, READ_WRITE, 16, 16),
            ("IOCTL_KTIMER_QUERY", 0x804, FILE_READ_DATA, 16, 104),
            ("IOCTL_KTIMER_WAIT", 0x805, FILE_READ_DATA, 16, 24),
            ("IOCTL_KTIMER_CLOSE", 0x806, READ_WRITE, 16, 0),
        ];
        assert!(IOCTLS.len() >= rows.len());
        for (spec, &(name, function, access, input, output)) in IOCTLS.iter().zip(rows) {
            assert_eq!(
                (spec.name, spec.function, spec.access),
                (name, function, access)
            );
            assert_eq!((spec.input_size, spec.output_size), (input, output));
            assert_eq!(name_of(spec.code), Some(name));
            assert_eq!(spec_of(spec.code), Some(spec));
            assert_eq!(function_of(spec.code), function);
            assert_eq!(access_of(spec.code), access);
        }
        assert_eq!(<Query as Ioctl>::CODE, IOCTL_KTIMER_QUERY);
        assert_eq!(spec_of(0x1234), None);
    }

    #[test]
    fn documented_statuses_follow_the_shape_and_the_operation() {
        use crate::status::*;
        let info = spec_of(IOCTL_KTIMER_GET_INFO).unwrap();
        for status in ALL_STATUSES {
            let expected = matches!(
                status,
                STATUS_SUCCESS
                    | STATUS_INFO_LENGTH_MISMATCH
                    | STATUS_BUFFER_TOO_SMALL
                    | STATUS_CANCELLED
            );
            assert_eq!(info.documents(status), expected, "{:?}", name_of(status));
        }
        let create = spec_of(IOCTL_KTIMER_CREATE).unwrap();
        assert!(create.documents(STATUS_REVISION_MISMATCH));
        assert!(create.documents(STATUS_QUOTA_EXCEEDED));
        assert!(!create.documents(STATUS_NOT_FOUND));
        assert!(!create.documents(STATUS_INVALID_DEVICE_REQUEST));
        assert!(!create.documents(STATUS_PENDING));
    }

    #[test]
    fn requests_decode_by_their_declared_input() {
        assert_eq!(
            Request::decode(IOCTL_KTIMER_GET_INFO, &[]),
            Ok(Request::GetInfo(Empty))
        );
        assert_eq!(
            Request::decode(IOCTL_KTIMER_GET_INFO, &[0]),
            Err(STATUS_INFO_LENGTH_MISMATCH)
        );
        assert_eq!(
            Request::decode(0x1234, &[]),
            Err(STATUS_INVALID_DEVICE_REQUEST)
        );
        assert_eq!(
            Request::decode(IOCTL_KTIMER_CLOSE, &[0; 4]),
            Err(STATUS_BUFFER_TOO_SMALL)
        );
        assert_eq!(Request::GetInfo(Empty).code(), IOCTL_KTIMER_GET_INFO);
    }

    #[test]
    fn codes_are_distinct() {
        for (i, a) in ALL_CODES.iter().enumerate() {
            for b in &ALL_CODES[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
