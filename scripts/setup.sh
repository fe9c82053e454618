#!/usr/bin/env bash
# Installs what pvio and its tests need on a Debian machine, idempotently:
# a second run with everything present takes well under a second.
#
# Debian packages only; the guest kernel is fetched by the test-guest kit
# itself (apt-get download into a cache, no installation), Rust crates by
# cargo, and cargo-fuzz by `cargo install`. Needs root or sudo only when a
# package is missing.
set -euo pipefail

# One package a line; other scripts and the docs point here.
PACKAGES=(
  qemu-system-x86     # the device model (and qemu-storage-daemon, the block peer)
  qemu-utils          # qemu-img: image conversion, test images
  busybox-static      # the test guest's userland
  cpio                # initramfs inspection
  iproute2            # ip: the tests' bridges and namespaces (pvio itself runs no `ip`)
  xorriso             # ISO images for CD-ROM tests
  e2fsprogs           # mkfs.ext4 for guest-side test filesystems
  kmod                # modprobe vfio-pci on a real host
  xz-utils            # guest kernel modules shipped as .ko.xz
  zstd                # guest kernel modules shipped as .ko.zst
  fio                 # the host's own ceiling row in `pvio bench blk`
  openssh-server      # sshd on 127.0.0.1 for the live-migration test
  openssh-client      # ssh: `pvio migrate` reaches the other host through it
  grub-pc-bin         # the BIOS-boot test's partitioned PV disk: grub-mkimage, boot.img (no bootloader install)
  syslinux            # the BIOS-boot test's whole-disk FAT PV disk (syslinux --install)
  mtools              # mformat / mmd / mcopy: the FAT file systems, without mounting
  ca-certificates
)

say() { printf 'setup: %s\n' "$*" >&2; }

# QEMU 10.0 is the device model baseline (docs/security.md: `-run-with
# user=`, chardev `reconnect-ms`, MSI-X on vhost-user NICs under TCG). Debian
# 13 ships it; Debian 12 takes the same build from bookworm-backports.
QEMU_MIN_MAJOR=10
BACKPORTS_LIST=/etc/apt/sources.list.d/pvio-bookworm-backports.list
codename=$( . /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
qemu_major() {
  { dpkg-query -W -f='${Version}\n' qemu-system-x86 2>/dev/null || true; } | sed -E 's/^[0-9]+://; s/[.].*//'
}

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

# The kit downloads the guest kernel with `apt-get download`, which needs
# package lists; a fresh machine (or container) may have none.
lists_empty() { ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; }

need_backports=0
if [ "$codename" = bookworm ]; then
  major=$(qemu_major)
  if [ -z "$major" ] || [ "$major" -lt "$QEMU_MIN_MAJOR" ] || [ ! -e "$BACKPORTS_LIST" ]; then
    need_backports=1
  fi
fi

if [ ${#missing[@]} -gt 0 ] || lists_empty || [ "$need_backports" = 1 ]; then
  # Root (or sudo) only when there is something to install.
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { say "need root or sudo to install: ${missing[*]:-(package lists only)}"; exit 1; }
    sudo_cmd=(sudo)
  fi
  say "installing: ${missing[*]:-(package lists only)}"
  if [ "$need_backports" = 1 ] && [ ! -e "$BACKPORTS_LIST" ]; then
    say "adding bookworm-backports for QEMU $QEMU_MIN_MAJOR"
    echo 'deb http://deb.debian.org/debian bookworm-backports main' |
      "${sudo_cmd[@]}" tee "$BACKPORTS_LIST" >/dev/null
    "${sudo_cmd[@]}" chmod 0644 "$BACKPORTS_LIST"
  fi
  "${sudo_cmd[@]}" apt-get update -qq
  if [ "$need_backports" = 1 ]; then
    # Taken from bookworm-backports below, not in Debian 12's 7.2.
    rest=()
    for p in "${missing[@]}"; do
      case "$p" in qemu-system-x86 | qemu-utils) ;; *) rest+=("$p") ;; esac
    done
    missing=("${rest[@]}")
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if [ "$need_backports" = 1 ]; then
    say "installing QEMU from bookworm-backports"
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
      -t bookworm-backports qemu-system-x86 qemu-utils >/dev/null
  fi
fi

# The operators' group: root and its members may use `pvio` on running
# domains (docs/security.md). Device models and backends run under
# numeric uids of their own, with no passwd entry.
if ! getent group pvio >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    groupadd --system pvio
  elif command -v sudo >/dev/null; then
    sudo groupadd --system pvio
  else
    say "need root or sudo to add the group 'pvio'"
  fi
  say "added the group 'pvio' (its members may control domains)"
fi

if ! command -v cargo >/dev/null; then
  say "cargo not found: install Rust with rustup (https://rustup.rs), then run this again"
  exit 1
fi
for comp in rustfmt clippy; do
  if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null; then
      rustup component add "$comp" >/dev/null
    else
      say "cargo $comp missing and no rustup to add it"
      exit 1
    fi
  fi
done
# cargo-fuzz builds the block parser's fuzz target (backends/fuzz) in CI.
# Installed from crates.io only when missing (a minute or two, once).
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
say "ready"
