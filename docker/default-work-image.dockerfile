# SPDX-License-Identifier: Apache-2.0
# The default work image for the docker runtime (onlyboxes/work:bookworm-data): Python with the
# data stack (numpy, pandas, matplotlib, pillow, scipy from Debian's packages) and the usual tools.
# For hosts that can reach a registry:
#   docker build -t onlyboxes/work:bookworm-data -f docker/default-work-image.dockerfile docker/
# Without a registry, scripts/build-test-image.sh builds the same content from Debian's mirror.
# docker/slim-work-image.dockerfile is the same without the data stack.
# The agent is not part of the image: the worker bind-mounts it read-only at /.onlyboxes/agent.
FROM debian:bookworm-slim

# Keep the package list in sync with scripts/build-test-image.sh and slim-work-image.dockerfile.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-pip python3-venv git curl jq ripgrep file sqlite3 zip unzip procps \
        ca-certificates \
        python3-numpy python3-pandas python3-matplotlib python3-pil python3-scipy \
    && rm -rf /var/lib/apt/lists/*

# matplotlib's font list, built once here: pythonExec's interpreter copies it into its cache
# directory instead of scanning the fonts in every box.
RUN mkdir -p /usr/share/onlyboxes/matplotlib \
    && MPLCONFIGDIR=/usr/share/onlyboxes/matplotlib MPLBACKEND=Agg \
        python3 -c 'import matplotlib.font_manager'

# Boxes run as this user (uid/gid 65532, ONLYBOXES_DOCKER_USER's default): a uid of its own,
# not 1000, which on the host is usually a person's account and, without a user namespace, the same
# uid. /workspace is replaced by a tmpfs at run time. Keep in sync with scripts/build-test-image.sh.
RUN groupadd --gid 65532 sandbox \
    && useradd -K UID_MAX=65533 --uid 65532 --gid 65532 --home-dir /workspace --no-create-home \
        --shell /bin/bash sandbox \
    && mkdir -p /workspace && chown 65532:65532 /workspace

# The version scripts/build-test-image.sh and the worker check (2: the box user became 65532).
LABEL onlyboxes.work-image-version="2" onlyboxes.work-image-variant="data"
ENV LANG=C.UTF-8
USER sandbox
WORKDIR /workspace
CMD ["/bin/bash"]
