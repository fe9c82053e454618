//! One test per config message that the whole-config tests do not reach:
//! the exact words a user reads, warnings in line order, and the xend
//! keys that go into the one no-effect line.

use super::*;

fn origin() -> Origin {
    Origin::File("/etc/xen/t".into())
}

fn errors(text: &str) -> Vec<String> {
    match load_str(text, &origin(), &[]) {
        Ok(_) => panic!("{text}: no error"),
        Err(ConfigError::Invalid { errors, .. }) => {
            errors.0.iter().map(ToString::to_string).collect()
        }
        Err(e) => panic!("{e}"),
    }
}

fn load(text: &str) -> Loaded {
    load_str(text, &origin(), &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn warnings(l: &Loaded) -> Vec<String> {
    l.warnings.iter().map(ToString::to_string).collect()
}

#[test]
fn an_unknown_guest_type() {
    assert_eq!(
        errors("name = 'x'\ntype = 'hvn'"),
        ["/etc/xen/t:2: key 'type': unknown guest type 'hvn'; pvio runs \"hvm\" guests"]
    );
    assert_eq!(
        errors("name = 'x'\nbuilder = 'generic'"),
        ["/etc/xen/t:2: key 'builder': unknown guest type 'generic'; pvio runs \"hvm\" guests"]
    );
}

#[test]
fn an_unknown_bios() {
    assert_eq!(
        errors("name = 'x'\nbios = 'coreboot'"),
        ["/etc/xen/t:2: key 'bios': unknown bios 'coreboot'; use seabios or ovmf"]
    );
}

#[test]
fn a_bad_keymap_name() {
    assert_eq!(
        errors("name = 'x'\nkeymap = '../../etc/passwd'"),
        ["/etc/xen/t:2: key 'keymap': '../../etc/passwd' is not a keymap name (such as en-us, de, fr)"]
    );
    assert_eq!(
        errors("name = 'x'\nkeymap = ''"),
        ["/etc/xen/t:2: key 'keymap': '' is not a keymap name (such as en-us, de, fr)"]
    );
}

#[test]
fn an_empty_boot_order() {
    assert_eq!(
        errors("name = 'x'\nboot = ''"),
        ["/etc/xen/t:2: key 'boot': the boot order is empty; use letters c (disk), d (CD-ROM), n (network), a (floppy)"]
    );
}

#[test]
fn a_usb_host_device() {
    assert_eq!(
        errors("name = 'x'\nusb = 1\nusbdevice = 'host:1234:5678'"),
        ["/etc/xen/t:3: key 'usbdevice': USB host device passthrough ('host:1234:5678') is not supported; pass the USB controller with pci = [...] instead"]
    );
}

#[test]
fn firmware_and_vga_win_over_their_older_keys() {
    let l = load("name = 'x'\nbios = 'ovmf'\nfirmware = 'bios'\nstdvga = 1\nvga = 'qxl'");
    assert_eq!(
        warnings(&l),
        [
            "/etc/xen/t:2: key 'bios': ignored: firmware is set and wins",
            "/etc/xen/t:4: key 'stdvga': ignored: vga is set and wins (as in xl)",
        ]
    );
    assert_eq!(l.spec.firmware, options::Firmware::Bios);
    assert_eq!(l.spec.vga, options::Vga::Qxl);
}

#[test]
fn warnings_come_in_line_order() {
    // Unknown keys are found last, after every known key was read; the
    // user reads them where they stand in the file.
    let l = load("name = 'x'\nmemroy = 64\nstdvga = 1\nvga = 'stdvga'\nfrobnicate = 1\nbios = 'x'\nfirmware = 'bios'");
    let lines: Vec<u32> = l.warnings.iter().map(|w| w.at.line).collect();
    assert_eq!(lines, [2, 3, 5, 6], "{:?}", warnings(&l));
    // And so do the warnings of a config that also has errors.
    let Err(ConfigError::Invalid { warnings, .. }) = load_str(
        "name = 'x'\nfoo = 1\nstdvga = 1\nvga = 'stdvga'\nmemory = 'x'",
        &origin(),
        &[],
    ) else {
        panic!("no error");
    };
    let lines: Vec<u32> = warnings.iter().map(|w| w.at.line).collect();
    assert_eq!(lines, [2, 3]);
}

#[test]
fn xend_keys_go_into_the_no_effect_line() {
    let l = load(
        "name = 'x'\nne2000 = 0\nisa = 0\nvpt_align = 1\nguest_os_type = 'windows'\n\
         cpuid_check = [ '1:ecx=xxxxxxxxxxxxxxxxxxxxxxxxxx1xxxxx' ]\non_xend_start = 'ignore'\n\
         on_xend_stop = 'ignore'\nmemory_sharing = 0\nxen_extended_power_mgmt = 0\n\
         restart = 'onreboot'\nvscsi = [ '/dev/sdx, 0:0:0:0' ]\nactmem = 42\n",
    );
    assert!(l.warnings.is_empty(), "{:?}", warnings(&l));
    assert_eq!(
        l.no_effect_line().unwrap(),
        "/etc/xen/t: keys with no effect under pvio (see docs/config.md): ne2000 (line 2), isa (line 3), \
         vpt_align (line 4), guest_os_type (line 5), cpuid_check (line 6), on_xend_start (line 7), \
         on_xend_stop (line 8), memory_sharing (line 9), xen_extended_power_mgmt (line 10), \
         restart (line 11), vscsi (line 12), actmem (line 13)"
    );
}

#[test]
fn nographic_makes_the_video_keys_have_no_effect_and_says_so() {
    // The Xen HVM guide's lines, with the display off.
    let l = load("name = 'x'\nnographic = 1\nstdvga = 0\nvga = 'stdvga'\nvnc = 1");
    assert_eq!(
        warnings(&l),
        [
            "/etc/xen/t:3: key 'stdvga': no effect: nographic = 1 turns the display off (no video card)",
            "/etc/xen/t:4: key 'vga': no effect: nographic = 1 turns the display off (no video card)",
        ]
    );
    assert_eq!(l.spec.vga, options::Vga::None);
    assert!(l.spec.vnc.is_none());
    // A bad value is still an error.
    assert_eq!(
        errors("name = 'x'\nnographic = 1\nvga = 'hercules'").len(),
        1
    );
}

#[test]
fn no_known_key_is_ever_called_unknown() {
    // Whatever else the config says, a key pvio knows is never warned
    // about as unknown (nor suggested as a typo of itself).
    for context in [
        "",
        "nographic = 1\n",
        "vnc = 0\nsdl = 0\n",
        "kernel = '/k'\n",
    ] {
        for key in keys::names() {
            for value in ["1", "'x'", "['x']"] {
                let text = format!("name = 'x'\n{context}{key} = {value}\n");
                let shown: Vec<String> = match load_str(&text, &origin(), &[]) {
                    Ok(l) => warnings(&l),
                    Err(e) => {
                        let (mut lines, _) = e.warning_lines();
                        lines.push(e.to_string());
                        lines
                    }
                };
                for line in shown {
                    assert!(
                        !line.contains("unknown key") && !line.contains(&format!("mean '{key}'")),
                        "{text:?}: {line}"
                    );
                }
            }
        }
    }
}
