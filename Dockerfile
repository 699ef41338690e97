# Targets: `web` (Django + Celery; the same image runs web, worker and beat) and `worker-gpu` (the agent).
FROM python:3.11-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# bpy needs X/GL client libraries even when rendering headless.
RUN apt-get update && apt-get install -y --no-install-recommends \
        libxrender1 libxxf86vm1 libxfixes3 libxi6 libxkbcommon0 libsm6 libgl1 libegl1 libgomp1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY manage.py ./
COPY marketplace ./marketplace
COPY workers ./workers
COPY render_kernels ./render_kernels
RUN useradd --create-home --uid 1000 market && chown -R market /app
USER market

FROM base AS web
ENV DEBUG=0
EXPOSE 8000
CMD ["gunicorn", "marketplace.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120"]

FROM nvidia/cuda:12.4.1-runtime-ubuntu22.04 AS worker-gpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends software-properties-common \
    && add-apt-repository ppa:deadsnakes/ppa && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
        libxrender1 libxxf86vm1 libxfixes3 libxi6 libxkbcommon0 libsm6 libgl1 libegl1 libgomp1 \
    && rm -rf /var/lib/apt/lists/* && python3.11 -m venv /venv
ENV PATH=/venv/bin:$PATH
WORKDIR /agent
COPY requirements.txt requirements-gpu.txt ./
RUN pip install -r requirements.txt
COPY workers ./workers
COPY render_kernels ./render_kernels
RUN useradd --create-home --uid 1000 agent && chown -R agent /agent
USER agent
ENTRYPOINT ["python", "-m", "workers"]
CMD ["run"]
