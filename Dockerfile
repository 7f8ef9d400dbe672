# dlplay in a container. CPU by default:
#   docker build -t dlplay . && docker run -p 8000:8000 dlplay
# With CUDA (needs the NVIDIA container toolkit; run with --gpus all):
#   docker build -t dlplay-cuda \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# The CPU wheel index keeps the default image small; override for CUDA (above).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC=torch==2.13.0
ENV TORCH_INDEX_URL=${TORCH_INDEX_URL} TORCH_SPEC=${TORCH_SPEC} \
    PIP_NO_CACHE_DIR=1 PIP_BREAK_SYSTEM_PACKAGES=1 \
    DLPLAY_DATA_DIR=/data PYTHONUNBUFFERED=1

WORKDIR /app
COPY . /app
# The same install steps as CI (.ci/run calls .ci/install --test).
RUN bash .ci/install

VOLUME ["/data"]
EXPOSE 8000
# Listen on all interfaces inside the container; publish with -p 8000:8000. Beyond loopback the server needs an
# access token (server/security.py): give one with -e DLPLAY_ACCESS_TOKEN=..., or a fresh one is made at each
# start and the page's address with it is printed (docker logs).
CMD ["sh", "-c", "exec dlplay --host 0.0.0.0 --port 8000 --token \"${DLPLAY_ACCESS_TOKEN:-$(python3 -c 'import secrets; print(secrets.token_urlsafe(12))')}\""]
