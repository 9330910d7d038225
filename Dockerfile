# podbgp: one image for every role — `podbgp node` (DaemonSet / compose nodes), `podbgp rr`
# (reflectors), `podbgp bgpd`, the CLI, and the podbgp-cni plugin with its installer.
#
#   docker build -t podbgp:0.1.0 .
#
# The default user is unprivileged (uid 10001): the CLI, `podbgp rr` and `podbgp bgpd` on
# ports >= 1024 run as it. `podbgp node` programs kernel routes and must run as root with
# CAP_NET_ADMIN (see deploy/kubernetes/daemonset-node.yaml and docker-compose.yml).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bgpd ./bgpd
COPY felix ./felix
COPY podbgp ./podbgp
COPY rr ./rr
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# iproute2 and ping for the compose router, pods and start script; nftables for felix's
# natOutgoing table; iptables (both backends) for felix's FORWARD accept chain.
# The standard CNI `loopback` plugin (Debian's build), which install-cni puts on a node that
# lacks it: every pod needs it, and podbgp-cni only wires eth0.
RUN apt-get update \
    && apt-get install -y --no-install-recommends iproute2 iputils-ping nftables iptables \
        containernetworking-plugins \
    && mkdir -p /opt/podbgp && cp /usr/lib/cni/loopback /opt/podbgp/cni-loopback \
    && apt-get purge -y containernetworking-plugins && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY deploy/cni/install-cni deploy/cni/podbgp-cni-host /opt/podbgp/
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin podbgp
USER 10001
ENV PYTHONUNBUFFERED=1
EXPOSE 179/tcp 9179/tcp
ENTRYPOINT ["podbgp"]
CMD ["--help"]
