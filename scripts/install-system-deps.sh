#!/usr/bin/env bash
# Installs the Debian packages vmsim needs (cross compiler, kernel source, QEMU baseline),
# only those that are missing, so a second run costs nothing.
set -euo pipefail
packages=(
  gcc-riscv64-linux-gnu libc6-dev-riscv64-cross binutils-riscv64-linux-gnu binutils-aarch64-linux-gnu
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  linux-source-6.1 flex bison bc cpio xz-utils make cmake pkg-config python3-venv gcc libc6-dev
  qemu-system-misc qemu-system-arm opensbi gdb-multiarch tmux device-tree-compiler patch ninja-build
  tshark chromium tesseract-ocr tesseract-ocr-eng
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Debian's own arm64 kernel (vmsim guest build --arch arm64 --distro) is fetched with
# apt, which needs the arm64 package lists.
foreign_arch=
dpkg --print-foreign-architectures | grep -qx arm64 || foreign_arch=arm64
[ ${#missing[@]} -eq 0 ] && [ -z "$foreign_arch" ] && exit 0
echo "installing Debian packages: ${missing[*]}${foreign_arch:+ (and apt's $foreign_arch lists)}"
if [ "$(id -u)" -ne 0 ]; then
  echo "vmsim: need root to install: ${foreign_arch:+dpkg --add-architecture $foreign_arch; }apt-get install ${missing[*]}" >&2
  exit 1
fi
[ -z "$foreign_arch" ] || dpkg --add-architecture "$foreign_arch"
export DEBIAN_FRONTEND=noninteractive
# tshark (the trace export test) pulls in wireshark-common, which would ask whether
# non-root users may capture; answer no beforehand so the install never stops.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -q >/dev/null
[ ${#missing[@]} -eq 0 ] || apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
