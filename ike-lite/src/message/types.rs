//! IANA IKEv2 registries used on the wire, as open newtypes.

use core::fmt;

macro_rules! iana {
    ($(#[$m:meta])* $name:ident($ty:ty) { $($(#[$cm:meta])* $c:ident = $v:expr,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub $ty);
        impl $name {
            $($(#[$cm])* pub const $c: $name = $name($v);)*
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match *self {
                    $($name::$c => f.write_str(stringify!($c)),)*
                    $name(n) => write!(f, "{}({})", stringify!($name), n),
                }
            }
        }
    };
}

iana! {
    /// IKEv2 Payload Types (RFC 7296 §3.2, RFC 7383).
    PayloadType(u8) {
        /// No next payload.
        NONE = 0,
        /// Security Association.
        SA = 33,
        /// Key Exchange.
        KE = 34,
        /// Identification - Initiator.
        IDI = 35,
        /// Identification - Responder.
        IDR = 36,
        /// Certificate.
        CERT = 37,
        /// Certificate Request.
        CERTREQ = 38,
        /// Authentication.
        AUTH = 39,
        /// Nonce (Ni/Nr).
        NONCE = 40,
        /// Notify.
        NOTIFY = 41,
        /// Delete.
        DELETE = 42,
        /// Vendor ID.
        VENDOR = 43,
        /// Traffic Selector - Initiator.
        TSI = 44,
        /// Traffic Selector - Responder.
        TSR = 45,
        /// Encrypted and Authenticated.
        SK = 46,
        /// Configuration.
        CP = 47,
        /// Extensible Authentication.
        EAP = 48,
        /// Encrypted and Authenticated Fragment (RFC 7383).
        SKF = 53,
    }
}

iana! {
    /// IKEv2 Exchange Types (RFC 7296 §3.1).
    ExchangeType(u8) {
        /// IKE_SA_INIT.
        IKE_SA_INIT = 34,
        /// IKE_AUTH.
        IKE_AUTH = 35,
        /// CREATE_CHILD_SA.
        CREATE_CHILD_SA = 36,
        /// INFORMATIONAL.
        INFORMATIONAL = 37,
    }
}

iana! {
    /// Security Protocol Identifiers (RFC 7296 §3.3.1).
    ProtocolId(u8) {
        /// Reserved / none (used in notifies without SPI).
        NONE = 0,
        /// IKE.
        IKE = 1,
        /// AH.
        AH = 2,
        /// ESP.
        ESP = 3,
    }
}

iana! {
    /// Transform Types (RFC 7296 §3.3.2).
    TransformType(u8) {
        /// Encryption Algorithm.
        ENCR = 1,
        /// Pseudorandom Function.
        PRF = 2,
        /// Integrity Algorithm.
        INTEG = 3,
        /// Diffie-Hellman group (Key Exchange Method).
        DH = 4,
        /// Extended Sequence Numbers.
        ESN = 5,
    }
}

iana! {
    /// Identification types (RFC 7296 §3.5).
    IdType(u8) {
        /// A single IPv4 address.
        IPV4_ADDR = 1,
        /// A fully-qualified domain name.
        FQDN = 2,
        /// An RFC 822 e-mail address.
        RFC822_ADDR = 3,
        /// A single IPv6 address.
        IPV6_ADDR = 5,
        /// DER ASN.1 distinguished name.
        DER_ASN1_DN = 9,
        /// Opaque key identifier.
        KEY_ID = 11,
    }
}

iana! {
    /// Authentication methods (RFC 7296 §3.8).
    AuthMethod(u8) {
        /// RSA digital signature.
        RSA_SIG = 1,
        /// Shared key message integrity code.
        SHARED_KEY_MIC = 2,
        /// DSS digital signature.
        DSS_SIG = 3,
        /// Generic digital signature (RFC 7427).
        DIGITAL_SIGNATURE = 14,
    }
}

iana! {
    /// Notify message types (RFC 7296 §3.10.1 and later RFCs).
    NotifyType(u16) {
        /// Error: a critical payload was not understood.
        UNSUPPORTED_CRITICAL_PAYLOAD = 1,
        /// Error: unknown IKE SPI.
        INVALID_IKE_SPI = 4,
        /// Error: the major version is not supported.
        INVALID_MAJOR_VERSION = 5,
        /// Error: malformed message.
        INVALID_SYNTAX = 7,
        /// Error: message ID out of window.
        INVALID_MESSAGE_ID = 9,
        /// Error: unknown ESP/AH SPI.
        INVALID_SPI = 11,
        /// Error: no acceptable proposal.
        NO_PROPOSAL_CHOSEN = 14,
        /// Error: the KE group is not the one selected.
        INVALID_KE_PAYLOAD = 17,
        /// Error: authentication failed.
        AUTHENTICATION_FAILED = 24,
        /// Error: only a single pair of selectors is acceptable.
        SINGLE_PAIR_REQUIRED = 34,
        /// Error: no more Child SAs are accepted.
        NO_ADDITIONAL_SAS = 35,
        /// Error: no internal address could be assigned.
        INTERNAL_ADDRESS_FAILURE = 36,
        /// Error: configuration payload required.
        FAILED_CP_REQUIRED = 37,
        /// Error: traffic selectors unacceptable.
        TS_UNACCEPTABLE = 38,
        /// Error: invalid selectors in a packet.
        INVALID_SELECTORS = 39,
        /// Error: temporary failure, retry later (RFC 7296 §2.25).
        TEMPORARY_FAILURE = 43,
        /// Error: the Child SA to rekey does not exist (RFC 7296 §2.25).
        CHILD_SA_NOT_FOUND = 44,
        /// Status: initial contact, drop old state with this peer.
        INITIAL_CONTACT = 16384,
        /// Status: window size.
        SET_WINDOW_SIZE = 16385,
        /// Status: more traffic selectors are possible.
        ADDITIONAL_TS_POSSIBLE = 16386,
        /// Status: IPComp supported.
        IPCOMP_SUPPORTED = 16387,
        /// Status: NAT detection hash of the source.
        NAT_DETECTION_SOURCE_IP = 16388,
        /// Status: NAT detection hash of the destination.
        NAT_DETECTION_DESTINATION_IP = 16389,
        /// Status: anti-clogging cookie (RFC 7296 §2.6).
        COOKIE = 16390,
        /// Status: transport mode requested.
        USE_TRANSPORT_MODE = 16391,
        /// Status: HTTP certificate lookup supported.
        HTTP_CERT_LOOKUP_SUPPORTED = 16392,
        /// Status: this CREATE_CHILD_SA rekeys the SA with the given SPI.
        REKEY_SA = 16393,
        /// Status: TFC padding not supported.
        ESP_TFC_PADDING_NOT_SUPPORTED = 16394,
        /// Status: non-first fragments also.
        NON_FIRST_FRAGMENTS_ALSO = 16395,
        /// Status: MOBIKE supported.
        MOBIKE_SUPPORTED = 16396,
        /// Status: IKEv2 fragmentation supported (RFC 7383).
        IKEV2_FRAGMENTATION_SUPPORTED = 16430,
        /// Status: signature hash algorithms (RFC 7427).
        SIGNATURE_HASH_ALGORITHMS = 16431,
    }
}

impl NotifyType {
    /// Error types are those below 16384 (RFC 7296 §3.10.1).
    pub fn is_error(self) -> bool {
        self.0 < 16384
    }
}
