# The Stepline image: the `stepline` command (gateway, operator, migrate, send...) as its entry point, run
# by a non-root user. The build stage compiles and installs; the final stages carry only Python, the
# installed packages and, for the demo, examples/. Build it, or the demo service's image:
#   docker build -t stepline:0.1.0 .
#   docker build --target demo -t stepline-demo:dev .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sdk/ sdk/
COPY store/ store/
COPY gateway/ gateway/
COPY operator/ operator/
COPY cli/ cli/
# A virtual environment without pip: the build stage's pip installs into it.
RUN python -m venv --without-pip /opt/stepline \
    && pip --python /opt/stepline/bin/python install --no-cache-dir "/src[server]"

FROM build AS build-demo
RUN pip --python /opt/stepline/bin/python install --no-cache-dir "/src[server,fastapi]"

# What both final images share: Python without its packaging tools, and the user that runs Stepline.
FROM ${PYTHON_IMAGE} AS base
RUN python -m pip uninstall --yes --no-cache-dir pip setuptools wheel \
    && groupadd --system --gid 10001 stepline \
    && useradd --system --uid 10001 --gid stepline --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin stepline
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

FROM base AS demo
COPY --from=build-demo /opt/stepline /opt/stepline
COPY examples/ /app/examples/
ENV PATH="/opt/stepline/bin:${PATH}"
WORKDIR /app
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["python", "-m", "examples.demo_service"]
CMD ["--host", "0.0.0.0", "--port", "8000"]

# The default target, last: the image the chart runs.
FROM base AS stepline
COPY --from=build /opt/stepline /opt/stepline
ENV PATH="/opt/stepline/bin:${PATH}"
USER 10001:10001
EXPOSE 8288
ENTRYPOINT ["stepline"]
CMD ["--help"]
