//! Plates, holds (a drawn batch, the candidate list) and claims as the API writes them: the
//! citizen's answers and the operator's view of an application share them.

use platepool_engine::calendar::rfc3339;
use platepool_engine::plate::FullPlate;
use platepool_engine::{Claim, HoldView, Serial};
use serde::Serialize;

use super::{ms_left, Shown};

/// `{"serial": "A1234", "plate": "粤K·A1234"}`: a number, alone and with its office's prefix.
#[derive(Debug, Clone, utoipa::ToSchema)]
#[schema(as = Plate)]
pub struct PlateAnswer {
    /// The full plate as printed.
    #[schema(example = "粤K·A1234")]
    pub plate: String,
    /// The serial alone.
    #[schema(value_type = String, example = "A1234")]
    pub serial: Shown<Serial>,
}

/// The separator between an office's prefix and a serial on a printed plate.
const PLATE_DOT: &str = "·";

impl PlateAnswer {
    /// The plate is written once, into a string of its exact size (a draw answers ten of them).
    pub fn new(prefix: &str, serial: Serial) -> PlateAnswer {
        let text = serial.text();
        let serial_text = text.as_str();
        let mut plate = String::with_capacity(prefix.len() + PLATE_DOT.len() + serial_text.len());
        plate.push_str(prefix);
        plate.push_str(PLATE_DOT);
        plate.push_str(serial_text);
        PlateAnswer {
            plate,
            serial: Shown(serial),
        }
    }
}

/// Fields in the order the derived form wrote them; the serial as a plain string, without
/// going through `Display`.
impl Serialize for PlateAnswer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut out = s.serialize_struct("PlateAnswer", 2)?;
        out.serialize_field("plate", &self.plate)?;
        out.serialize_field("serial", self.serial.0.text().as_str())?;
        out.end()
    }
}

/// A drawn batch or the candidate list: the numbers held and when they are let go.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Hold)]
pub struct HoldAnswer {
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub expires_in_ms: u64,
    pub plates: Vec<PlateAnswer>,
    /// A batch in the citizen's view of an application: whether it has given its candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picked: Option<bool>,
}

impl HoldAnswer {
    pub fn new(prefix: &str, hold: &HoldView, now_ms: u64) -> HoldAnswer {
        HoldAnswer {
            expires_at: rfc3339(hold.expires_at_ms),
            expires_in_ms: ms_left(hold.expires_at_ms, now_ms),
            plates: hold
                .serials
                .iter()
                .map(|&s| PlateAnswer::new(prefix, s))
                .collect(),
            picked: None,
        }
    }
}

/// The pre-selection voucher's serial (凭证编号) and verification code (验证码).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VoucherKey {
    pub serial: String,
    pub code: String,
}

/// A claimed number: the pre-selection.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Claim)]
pub struct ClaimAnswer {
    #[schema(value_type = String)]
    pub serial: Shown<Serial>,
    pub plate: String,
    #[schema(format = DateTime)]
    pub claimed_at: String,
    /// 23:59:59 office time of the last working day to register (API.md "Dates").
    #[schema(format = DateTime)]
    pub register_by: String,
    /// The citizen's answers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub register_by_in_ms: Option<u64>,
    pub voucher: VoucherKey,
    /// A practice claim: a void number that was never taken.
    pub void: bool,
}

impl ClaimAnswer {
    /// The claim as operators see it.
    pub fn new(prefix: &str, claim: &Claim) -> ClaimAnswer {
        ClaimAnswer {
            serial: Shown(claim.serial),
            plate: FullPlate(prefix, claim.serial).to_string(),
            claimed_at: rfc3339(claim.claimed_at_ms),
            register_by: rfc3339(claim.register_by_ms),
            register_by_in_ms: None,
            voucher: VoucherKey {
                serial: claim.voucher_serial.clone(),
                code: claim.voucher_code.clone(),
            },
            void: claim.void,
        }
    }

    /// The claim as its citizen sees it: with the time left to register.
    pub fn for_citizen(prefix: &str, claim: &Claim, now_ms: u64) -> ClaimAnswer {
        ClaimAnswer {
            register_by_in_ms: Some(ms_left(claim.register_by_ms, now_ms)),
            ..ClaimAnswer::new(prefix, claim)
        }
    }
}
