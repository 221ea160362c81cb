"""Kafka transport settings: clear text refused in production; a client certificate per service (mTLS)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from shared.settings import KafkaSettings


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_clear_text_kafka_is_refused_in_production(protocol: str) -> None:
    with pytest.raises(ValidationError, match=f"KAFKA_SECURITY_PROTOCOL {protocol} is refused in production"):
        KafkaSettings(environment="production", kafka_security_protocol=protocol)  # type: ignore[arg-type]
    assert (
        KafkaSettings(environment="development", kafka_security_protocol=protocol).kafka_security_protocol
        == protocol
    )  # type: ignore[arg-type]


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    signer: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )


def test_the_service_presents_its_own_client_certificate(tmp_path: Path) -> None:
    """The broker side of a mutual-TLS handshake sees the service's principal (the certificate's CN)."""
    ca_key, broker_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _issue("cluster-ca", ca_key, None, ca_key)
    _write(tmp_path / "ca", ca)
    _write(tmp_path / "broker", _issue("broker", broker_key, ca, ca_key), broker_key)
    _write(tmp_path / "user", _issue("migrant-exchange-registry-main", client_key, ca, ca_key), client_key)
    settings = KafkaSettings(
        environment="production",
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=str(tmp_path / "ca.crt"),
        kafka_ssl_certfile=str(tmp_path / "user.crt"),
        kafka_ssl_keyfile=str(tmp_path / "user.key"),
    )
    client_context = settings.kafka_client_options()["ssl_context"]
    assert isinstance(client_context, ssl.SSLContext)
    broker_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    broker_context.load_cert_chain(tmp_path / "broker.crt", tmp_path / "broker.key")
    broker_context.load_verify_locations(tmp_path / "ca.crt")
    broker_context.verify_mode = ssl.CERT_REQUIRED

    async def handshake() -> str:
        principal: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peercert")
            principal.set_result(dict(field[0] for field in peer["subject"])["commonName"])
            writer.close()

        server = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=broker_context)
        port = server.sockets[0].getsockname()[1]
        async with server:
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
            )
            found = await asyncio.wait_for(principal, 5)
            writer.close()
            return found

    assert asyncio.run(handshake()) == "migrant-exchange-registry-main"
