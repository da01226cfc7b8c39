# SPDX-License-Identifier: Apache-2.0
# The default work image for the docker runtime (onlyboxes/work:bookworm), for hosts that can reach
# a registry:
#   docker build -t onlyboxes/work:bookworm -f docker/default-work-image.dockerfile docker/
# Without a registry, scripts/build-test-image.sh builds the same content from Debian's mirror.
# The agent is not part of the image: the worker bind-mounts it read-only at /.onlyboxes/agent.
FROM debian:bookworm-slim

# Keep the package list in sync with scripts/build-test-image.sh.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-pip python3-venv git curl jq ripgrep file sqlite3 zip unzip procps \
        ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Boxes run as this user (uid/gid 1000); /workspace is replaced by a tmpfs at run time.
RUN groupadd --gid 1000 sandbox \
    && useradd --uid 1000 --gid 1000 --home-dir /workspace --no-create-home --shell /bin/bash sandbox \
    && mkdir -p /workspace && chown 1000:1000 /workspace

ENV LANG=C.UTF-8
USER sandbox
WORKDIR /workspace
CMD ["/bin/bash"]
