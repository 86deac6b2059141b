"""A gateway with its own SoftHSM2 token, as the appliance's first boot
makes it (hsm/provision), its S/MIME certificates self-signed on the
token, and optionally its OpenPGP identity (`sealgate pgp init`).

    gw = token_gateway(tmp_path / "gw", settings, openpgp_uid="Gateway <gateway@example.org>")
    gw.start()
    gw.gateway_pem        # its decryption certificate, for senders
    gw.gateway_asc        # its OpenPGP certificate, if made
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from harness import REPO, Gateway, sealgate_bin


def _sealgate_on_path(home: Path) -> str:
    """hsm/provision runs `sealgate hsm init` from PATH: put the binary
    under test there, whatever its file is called."""
    shim = home / "sealgate-bin"
    shim.mkdir(parents=True, exist_ok=True)
    link = shim / "sealgate"
    if not link.exists():
        link.symlink_to(Path(sealgate_bin()).resolve())
    return str(shim)


def token_gateway(home: Path, settings: dict | None = None, openpgp_uid: str | None = None,
                  email: str = "gateway@example.org", certificates: bool = True) -> Gateway:
    """`certificates=False`: the token and its keys only, as the
    appliance's first boot leaves them (the wizard makes the certificates)."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    data = home / "data"
    env = {"SOFTHSM2_CONF": str(data / "hsm" / "softhsm2.conf"),
           "PATH": f"{_sealgate_on_path(home)}:{os.environ['PATH']}"}
    gw = Gateway(home, settings or {}, env=env)
    subprocess.run([str(REPO / "hsm" / "provision"), str(data)], env=gw.env, check=True,
                   capture_output=True, timeout=300)
    gw.gateway_pem = None
    gw.gateway_asc = None
    if not certificates:
        return gw
    gw.cli("keys", "self-sign", "gateway-sign", "--cn", "gw.test", "--email", email)
    gw.cli("keys", "self-sign", "gateway-decrypt", "--cn", "gw.test", "--issuer", "gateway-sign")
    gw.gateway_pem = home / "gateway.pem"
    gw.cli("keys", "export-cert", "gateway-decrypt", "--out", str(gw.gateway_pem))
    gw.gateway_asc = None
    if openpgp_uid:
        gw.cli("pgp", "init", "--user-id", openpgp_uid)
        gw.gateway_asc = home / "gateway.asc"
        gw.cli("pgp", "export-gateway-cert", "--out", str(gw.gateway_asc))
    return gw
