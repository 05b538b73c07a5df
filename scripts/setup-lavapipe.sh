#!/usr/bin/env bash
# WebGPU on a machine without a GPU, for tests of our WebGPU code and WGSL kernels: unpacks Mesa 25's
# lavapipe (software Vulkan) from Debian bookworm-backports into a private folder (Debian 12's own
# Mesa 22.3 lacks features Dawn needs) and prints the environment that points Dawn at it.
#   eval "$(scripts/setup-lavapipe.sh)"      # idempotent; the system's Mesa is left alone
set -euo pipefail
dest=${LAVAPIPE_DIR:-$HOME/.cache/lavapipe25}
lib=$dest/root/usr/lib/x86_64-linux-gnu
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
if [ ! -f "$lib/libvulkan_lvp.so" ]; then
  mirror=$(sed -n 's/^URIs: *\([^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  [ -n "$mirror" ] || mirror=$(awk '$1=="deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  [ -n "$mirror" ] || { echo "setup-lavapipe: no Debian mirror in the apt sources" >&2; exit 1; }
  list=/etc/apt/sources.list.d/bookworm-backports.list
  [ -f "$list" ] || echo "deb $mirror bookworm-backports main" | $sudo tee "$list" >/dev/null
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq --no-install-recommends libvulkan1 libllvm15 libelf1 libx11-xcb1 libxcb-dri3-0 \
    libxcb-present0 libxcb-randr0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0 libxshmfence1 libwayland-client0 \
    libzstd1 libsensors5 >&2
  mkdir -p "$dest/debs"
  (cd "$dest/debs" && { apt-get download -t bookworm-backports mesa-vulkan-drivers mesa-libgallium libdrm2 \
      libdrm-amdgpu1 libdrm-intel1 2>/dev/null || apt-get download -t bookworm-backports mesa-vulkan-drivers \
      libdrm2 libdrm-amdgpu1; } >&2)
  for deb in "$dest"/debs/*.deb; do dpkg-deb -x "$deb" "$dest/root"; done
  printf '{"ICD":{"api_version":"1.4.305","library_arch":"64","library_path":"%s/libvulkan_lvp.so"},"file_format_version":"1.0.1"}\n' \
    "$lib" > "$dest/lvp_icd.json"
fi
echo "export VK_DRIVER_FILES=$dest/lvp_icd.json VK_ICD_FILENAMES=$dest/lvp_icd.json LD_LIBRARY_PATH=$lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH} XDG_RUNTIME_DIR=\${XDG_RUNTIME_DIR:-/tmp}"
