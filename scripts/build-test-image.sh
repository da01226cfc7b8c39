#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds a work image without any container registry: a Debian bookworm root file system from
# Debian's mirror (debootstrap) with the same packages and user as the Dockerfiles in docker/,
# imported with `docker import`. Two variants:
#   data (default)  onlyboxes/work:bookworm-data, the default image: Python with numpy, pandas,
#                   matplotlib, pillow and scipy (docker/default-work-image.dockerfile), and
#                   matplotlib's font list built ahead
#   slim            onlyboxes/work:bookworm, the same without the data stack
#                   (docker/slim-work-image.dockerfile)
# Skipped when the tag exists with the current version label (onlyboxes.work-image-version); an
# older build under the tag is rebuilt and then removed (delete the tag with `docker rmi TAG` to
# force a rebuild).
#
# Environment:
#   OBX_WORK_VARIANT  data (default) or slim
#   OBX_WORK_IMAGE    tag to build (default: the variant's, above)
#   OBX_DEBIAN_MIRROR mirror for debootstrap (default http://deb.debian.org/debian)
set -euo pipefail

variant="${OBX_WORK_VARIANT:-data}"
mirror="${OBX_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Keep in sync with docker/slim-work-image.dockerfile and docker/default-work-image.dockerfile.
packages=python3,python3-pip,python3-venv,git,curl,jq,ripgrep,file,sqlite3,zip,unzip,procps,ca-certificates
data_packages=python3-numpy,python3-pandas,python3-matplotlib,python3-pil,python3-scipy
case "$variant" in
data)
    image="${OBX_WORK_IMAGE:-onlyboxes/work:bookworm-data}"
    packages="$packages,$data_packages"
    ;;
slim)
    image="${OBX_WORK_IMAGE:-onlyboxes/work:bookworm}"
    ;;
*)
    echo "build-test-image: OBX_WORK_VARIANT=$variant: expected data or slim" >&2
    exit 2
    ;;
esac
# Where the data image keeps matplotlib's font list, which pythonExec's interpreter copies into
# its cache directory instead of scanning the fonts in every box.
mpl_seed=/usr/share/onlyboxes/matplotlib
# The box user's uid and gid, and the image version (2: the box user became 65532); the worker warns
# about an image with another version.
box_uid=65532
version=2

sudo=""
if ((EUID != 0)); then
    sudo="sudo"
fi

old_id=""
if docker image inspect "$image" >/dev/null 2>&1; then
    have="$(docker image inspect -f '{{index .Config.Labels "onlyboxes.work-image-version"}}' "$image" 2>/dev/null || true)"
    if [[ "$have" == "$version" ]]; then
        echo "build-test-image: $image already exists (version $version); reusing it"
        exit 0
    fi
    old_id="$(docker image inspect -f '{{.Id}}' "$image")"
    have="${have/<no value>/}"
    echo "build-test-image: $image is an older build (version ${have:-1}, want $version: the box user is now uid $box_uid); rebuilding it"
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    echo "build-test-image: installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

work="$(mktemp -d /var/tmp/onlyboxes-rootfs.XXXXXX)"
cleanup() { $sudo rm -rf --one-file-system "$work"; }
trap cleanup EXIT
rootfs="$work/rootfs"

t0=$SECONDS
echo "build-test-image: debootstrap bookworm into $rootfs (this takes a few minutes)"
$sudo debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    echo "build-test-image: debootstrap failed" >&2
    exit 1
}

# The unprivileged user boxes run as, and the workspace they start in.
$sudo chroot "$rootfs" groupadd --gid "$box_uid" sandbox
$sudo chroot "$rootfs" useradd -K UID_MAX=65533 --uid "$box_uid" --gid "$box_uid" --home-dir /workspace \
    --no-create-home --shell /bin/bash sandbox
$sudo mkdir -p "$rootfs/workspace"
$sudo chown "$box_uid:$box_uid" "$rootfs/workspace"
if [[ "$variant" == data ]]; then
    $sudo mkdir -p "$rootfs$mpl_seed"
    $sudo chroot "$rootfs" env MPLCONFIGDIR="$mpl_seed" MPLBACKEND=Agg python3 -c \
        'import matplotlib.font_manager' ||
        echo "build-test-image: could not build matplotlib's font list (boxes build their own)" >&2
fi
# Smaller image: package lists and caches are not needed at run time.
$sudo chroot "$rootfs" apt-get clean
$sudo rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/tmp/* \
    "$rootfs"/var/log/*.log

echo "build-test-image: importing as $image"
$sudo tar -C "$rootfs" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'USER sandbox' \
    --change 'WORKDIR /workspace' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL onlyboxes.work-image-version=$version" \
    --change "LABEL onlyboxes.work-image-variant=$variant" \
    --message "onlyboxes work image, $variant (debootstrap bookworm, scripts/build-test-image.sh)" \
    - "$image" >/dev/null
echo "build-test-image: built $image in $((SECONDS - t0)) s"
if [[ -n "$old_id" ]]; then
    # The tag moved to the new image; the old one goes unless a container still uses it.
    docker image rm "$old_id" >/dev/null 2>&1 ||
        echo "build-test-image: the older build ($old_id) is still in use; remove it later with docker image rm"
fi
