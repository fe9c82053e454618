//! PCI addresses: `[DDDD:]BB:SS.F` in hex, as `lspci -D` prints them and as
//! sysfs names devices (`/sys/bus/pci/devices/0000:03:00.0`).

use std::fmt;
use std::str::FromStr;

/// What is wrong with a PCI address typed by a user or found in a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BdfError {
    /// Nothing was given.
    #[error("empty PCI address: expected [DDDD:]BB:SS.F, e.g. 0000:03:00.0")]
    Empty,
    /// The overall shape is wrong (missing `:` or `.`, too many parts).
    #[error("`{0}` is not a PCI address: expected [DDDD:]BB:SS.F in hex, e.g. 0000:03:00.0")]
    Shape(String),
    /// One field is not hexadecimal or has too many digits.
    #[error("`{text}` in `{input}` is not a valid {field}: expected at most {digits} hex digits")]
    Field {
        /// The whole address as given.
        input: String,
        /// Which field (`domain`, `bus`, `slot`, `function`).
        field: &'static str,
        /// The field's text.
        text: String,
        /// How many hex digits the field may have.
        digits: usize,
    },
    /// The slot (device) number is above 0x1f.
    #[error("slot {slot:#04x} in `{input}` is out of range: a PCI slot is 00 to 1f")]
    SlotRange {
        /// The whole address as given.
        input: String,
        /// The slot number found.
        slot: u8,
    },
    /// The function number is above 7.
    #[error("function {function} in `{input}` is out of range: a PCI function is 0 to 7")]
    FunctionRange {
        /// The whole address as given.
        input: String,
        /// The function number found.
        function: u8,
    },
}

/// A PCI device address: domain (segment), bus, slot (device) and function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// PCI domain (segment group), usually 0.
    pub domain: u16,
    /// Bus number.
    pub bus: u8,
    /// Slot (device) number, 0..=0x1f.
    pub slot: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

impl Bdf {
    /// The highest slot number.
    pub const MAX_SLOT: u8 = 0x1f;
    /// The highest function number.
    pub const MAX_FUNCTION: u8 = 7;

    /// A checked address.
    pub fn new(domain: u16, bus: u8, slot: u8, function: u8) -> Result<Self, BdfError> {
        let text = format!("{domain:04x}:{bus:02x}:{slot:02x}.{function:x}");
        if slot > Self::MAX_SLOT {
            return Err(BdfError::SlotRange { input: text, slot });
        }
        if function > Self::MAX_FUNCTION {
            return Err(BdfError::FunctionRange {
                input: text,
                function,
            });
        }
        Ok(Self {
            domain,
            bus,
            slot,
            function,
        })
    }
}

fn hex_field<T>(
    input: &str,
    text: &str,
    field: &'static str,
    digits: usize,
    parse: fn(&str, u32) -> Result<T, std::num::ParseIntError>,
) -> Result<T, BdfError> {
    let bad = || BdfError::Field {
        input: input.to_owned(),
        field,
        text: text.to_owned(),
        digits,
    };
    if text.is_empty() || text.len() > digits || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    parse(text, 16).map_err(|_| bad())
}

impl FromStr for Bdf {
    type Err = BdfError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.trim();
        if input.is_empty() {
            return Err(BdfError::Empty);
        }
        let shape = || BdfError::Shape(input.to_owned());
        let (head, function) = input.rsplit_once('.').ok_or_else(shape)?;
        let parts: Vec<&str> = head.split(':').collect();
        let (domain, bus, slot) = match parts.as_slice() {
            [bus, slot] => ("0000", *bus, *slot),
            [domain, bus, slot] => (*domain, *bus, *slot),
            _ => return Err(shape()),
        };
        if function.contains(':') || head.contains('.') {
            return Err(shape());
        }
        let domain = hex_field(input, domain, "domain", 4, u16::from_str_radix)?;
        let bus = hex_field(input, bus, "bus", 2, u8::from_str_radix)?;
        let slot = hex_field(input, slot, "slot", 2, u8::from_str_radix)?;
        let function = hex_field(input, function, "function", 1, u8::from_str_radix)?;
        if slot > Self::MAX_SLOT {
            return Err(BdfError::SlotRange {
                input: input.to_owned(),
                slot,
            });
        }
        if function > Self::MAX_FUNCTION {
            return Err(BdfError::FunctionRange {
                input: input.to_owned(),
                function,
            });
        }
        Ok(Self {
            domain,
            bus,
            slot,
            function,
        })
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }
}

impl serde::Serialize for Bdf {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Bdf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_short_forms_parse_and_print_full() {
        let b: Bdf = "0000:03:00.0".parse().unwrap();
        assert_eq!(b, Bdf::new(0, 3, 0, 0).unwrap());
        assert_eq!(b.to_string(), "0000:03:00.0");
        let short: Bdf = "03:00.0".parse().unwrap();
        assert_eq!(short, b);
        let hex: Bdf = "ABCD:fe:1F.7".parse().unwrap();
        assert_eq!(hex.to_string(), "abcd:fe:1f.7");
        let padded: Bdf = " 0:3:1.2 ".parse().unwrap();
        assert_eq!(padded.to_string(), "0000:03:01.2");
    }

    #[test]
    fn empty_is_its_own_error() {
        assert_eq!("".parse::<Bdf>(), Err(BdfError::Empty));
        assert_eq!("  ".parse::<Bdf>(), Err(BdfError::Empty));
    }

    #[test]
    fn wrong_shapes_are_refused() {
        for s in [
            "0000:03:00",
            "03.0",
            "1:2:3:4.0",
            "0000:03:00.0.1",
            "03:00.0:1",
        ] {
            assert!(
                matches!(s.parse::<Bdf>(), Err(BdfError::Shape(_))),
                "{s}: {:?}",
                s.parse::<Bdf>()
            );
        }
    }

    #[test]
    fn bad_fields_name_the_field() {
        let cases = [
            ("00000:03:00.0", "domain"),
            ("0000:003:00.0", "bus"),
            ("0000:g3:00.0", "bus"),
            ("0000:03:x0.0", "slot"),
            ("0000:03:00.a0", "function"),
            ("0000:03:00.", "function"),
            ("0000::00.0", "bus"),
            ("0000:+3:00.0", "bus"),
        ];
        for (s, field) in cases {
            match s.parse::<Bdf>() {
                Err(BdfError::Field { field: f, .. }) => assert_eq!(f, field, "{s}"),
                other => panic!("{s}: {other:?}"),
            }
        }
    }

    #[test]
    fn slot_and_function_ranges() {
        let e = "0000:03:20.0".parse::<Bdf>().unwrap_err();
        assert!(matches!(e, BdfError::SlotRange { slot: 0x20, .. }), "{e:?}");
        assert!(e.to_string().contains("00 to 1f"), "{e}");
        let e = "0000:03:00.8".parse::<Bdf>().unwrap_err();
        assert!(
            matches!(e, BdfError::FunctionRange { function: 8, .. }),
            "{e:?}"
        );
        assert!(Bdf::new(0, 0, 0x20, 0).is_err());
        assert!(Bdf::new(0, 0, 0, 8).is_err());
    }

    #[test]
    fn serde_round_trip_as_string() {
        let b: Bdf = "0000:00:1f.3".parse().unwrap();
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, "\"0000:00:1f.3\"");
        let back: Bdf = serde_json::from_str(&json).unwrap();
        assert_eq!(back, b);
        assert!(serde_json::from_str::<Bdf>("\"zz\"").is_err());
    }
}
