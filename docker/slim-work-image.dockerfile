# SPDX-License-Identifier: Apache-2.0
# The slim work image (onlyboxes/work:bookworm): Python and the usual tools without the data stack,
# for deployments that want smaller boxes; the default image is
# docker/default-work-image.dockerfile. For hosts that can reach a registry:
#   docker build -t onlyboxes/work:bookworm -f docker/slim-work-image.dockerfile docker/
# Without a registry, OBX_WORK_VARIANT=slim scripts/build-test-image.sh builds the same content
# from Debian's mirror. Point the worker at it with WORKER_PYTHON_EXEC_DOCKER_IMAGE and
# WORKER_TERMINAL_EXEC_DOCKER_IMAGE.
# The agent is not part of the image: the worker bind-mounts it read-only at /.onlyboxes/agent.
FROM debian:bookworm-slim

# Keep the package list in sync with scripts/build-test-image.sh and default-work-image.dockerfile.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-pip python3-venv git curl jq ripgrep file sqlite3 zip unzip procps \
        ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Boxes run as this user (uid/gid 65532, ONLYBOXES_DOCKER_USER's default): a uid of its own,
# not 1000, which on the host is usually a person's account and, without a user namespace, the same
# uid. /workspace is replaced by a tmpfs at run time. Keep in sync with scripts/build-test-image.sh.
RUN groupadd --gid 65532 sandbox \
    && useradd -K UID_MAX=65533 --uid 65532 --gid 65532 --home-dir /workspace --no-create-home \
        --shell /bin/bash sandbox \
    && mkdir -p /workspace && chown 65532:65532 /workspace

# The version scripts/build-test-image.sh and the worker check (2: the box user became 65532).
LABEL onlyboxes.work-image-version="2" onlyboxes.work-image-variant="slim"
ENV LANG=C.UTF-8
USER sandbox
WORKDIR /workspace
CMD ["/bin/bash"]
