//! Reading the console and display keys: serial ports, VNC, SDL, the
//! video card, USB input devices and the QEMU monitor.

use super::Builder;
use crate::config::options::{Serial, UsbDevice, Vga};
use crate::config::spec::VncSpec;

impl Builder<'_> {
    pub(super) fn serials(&mut self) -> Vec<Serial> {
        let mut out = Vec::new();
        for s in self.f.string_or_strings("serial").unwrap_or_default() {
            match Serial::parse(&s.value) {
                Ok(Some(port)) if out.len() < 4 => out.push(port),
                Ok(Some(_)) => {
                    self.f
                        .error(&s.at, "serial", "a PC has four serial ports (COM1-COM4)")
                }
                Ok(None) => {}
                Err(e) => self.f.error(&s.at, "serial", e),
            }
        }
        out
    }

    pub(super) fn vnc(&mut self, nographic: bool) -> Option<VncSpec> {
        let on = self.f.boolean("vnc").unwrap_or(true);
        let listen = self.f.string("vnclisten");
        let display = self.f.number_in::<u32>("vncdisplay", 0, 59635);
        let unused = self.f.boolean("vncunused").unwrap_or(true);
        let password = self
            .f
            .string("vncpasswd")
            .map(|p| p.value)
            .filter(|p| !p.is_empty());
        if !on || nographic {
            return None;
        }
        let (listen, from_listen) = match listen {
            None => ("127.0.0.1".to_owned(), None),
            Some(l) => match l.value.rsplit_once(':') {
                Some((addr, n))
                    if !addr.contains(':')
                        && !n.is_empty()
                        && n.chars().all(|c| c.is_ascii_digit()) =>
                {
                    (addr.to_owned(), n.parse::<u32>().ok())
                }
                _ => (l.value, None),
            },
        };
        Some(VncSpec {
            listen,
            display: display.or(from_listen),
            unused,
            password,
        })
    }

    pub(super) fn keymap(&mut self) -> Option<String> {
        let k = self.f.string("keymap")?;
        if k.value.is_empty()
            || !k
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            self.f.error(
                &k.at,
                "keymap",
                format!("'{}' is not a keymap name (such as en-us, de, fr)", k.value),
            );
            return None;
        }
        Some(k.value)
    }

    pub(super) fn full_screen(&mut self, sdl: bool) -> bool {
        let Some(at) = self.f.take("full-screen").map(|s| s.value.at.clone()) else {
            return false;
        };
        let on = self.f.boolean("full-screen").unwrap_or(false);
        if on && !sdl {
            self.inert(
                "full-screen".to_owned(),
                &at,
                "only the SDL window can be full screen; sdl is off",
            );
            return false;
        }
        on
    }

    /// The video card: `vga`, else `stdvga`; none with `nographic = 1`,
    /// which makes both keys have no effect (they are still checked).
    pub(super) fn vga(&mut self, nographic: bool) -> Vga {
        let vga = self.f.string("vga");
        let stdvga = self.f.take("stdvga").map(|s| s.value.at.clone());
        let std = self.f.boolean("stdvga");
        if nographic {
            for (key, at) in [
                ("vga", vga.as_ref().map(|v| v.at.clone())),
                ("stdvga", stdvga),
            ] {
                if let Some(at) = at {
                    self.f.warn(
                        &at,
                        key,
                        "no effect: nographic = 1 turns the display off (no video card)",
                    );
                }
            }
            if let Some(v) = &vga {
                let _ = self.parsed("vga", v, Vga::parse);
            }
            return Vga::None;
        }
        if let (Some(_), Some(at)) = (&vga, &stdvga) {
            self.f
                .warn(at, "stdvga", "ignored: vga is set and wins (as in xl)");
        }
        match (vga, std) {
            (Some(v), _) => self.parsed("vga", &v, Vga::parse).unwrap_or(Vga::Cirrus),
            (None, Some(true)) => Vga::Std,
            _ => Vga::Cirrus,
        }
    }

    pub(super) fn usbdevices(&mut self) -> Vec<UsbDevice> {
        let mut out = Vec::new();
        for s in self.f.string_or_strings("usbdevice").unwrap_or_default() {
            if let Some(d) = self.parsed("usbdevice", &s, UsbDevice::parse) {
                if !out.contains(&d) {
                    out.push(d);
                }
            }
        }
        out
    }

    pub(super) fn monitor(&mut self) -> bool {
        let at = self.f.take("monitor").map(|s| s.value.at.clone());
        let on = self.f.boolean("monitor").unwrap_or(false);
        if let (true, Some(at)) = (on, at) {
            self.f.warn(
                &at,
                "monitor",
                "unsafe: QEMU's human monitor can read host files and change the guest; it listens on monitor.sock in the domain's run dir, keep that directory private",
            );
        }
        on
    }
}
