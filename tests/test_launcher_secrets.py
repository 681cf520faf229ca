"""The launcher's side of `--secret` (fahr_core.launcher), on the real file system and against a
real moto server: the local driver's files read and removed; on SageMaker, the job's secret read
with a SigV4 signature of the launcher's own, which must be botocore's to the byte."""

from __future__ import annotations

import datetime
import http.server
import json
import threading

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from fahr_core import launcher

NOW = datetime.datetime(2026, 12, 3, 14, 5, 6, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize("url, token, body", [
    ("https://secretsmanager.eu-west-1.amazonaws.com/", "", b'{"SecretId": "x"}'),
    ("http://127.0.0.1:4566/", "a-session-token", b'{"SecretId": "arn:aws:secretsmanager:eu-west-1:1:secret:fahr/j"}'),
    ("https://example.com:8443/some/path?b=2&a=1&c=x%20y", "t", b""),
])
def test_the_signature_is_botocores(monkeypatch, url, token, body):
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "secretsmanager.GetSecretValue"}
    ours = launcher.sigv4_headers("POST", url, headers, body, "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token,
                                  "eu-west-1", "secretsmanager", NOW)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: NOW.replace(tzinfo=None))
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token or None), "secretsmanager",
              "eu-west-1").add_auth(request)
    assert ours["X-Amz-Date"] == request.headers["X-Amz-Date"]
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours.get("X-Amz-Security-Token") == request.headers.get("X-Amz-Security-Token")


def test_the_local_files_become_variables_and_are_removed(tmp_path):
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o700)
    (folder / "TOK").write_text("välue\nwith a newline")
    (folder / "OTHER").write_text("b")
    assert launcher.job_secrets(environ={}, folder=str(folder)) == {"TOK": "välue\nwith a newline", "OTHER": "b"}
    assert not folder.exists()
    assert launcher.job_secrets(environ={}, folder=str(folder)) == {}  # none given: nothing


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class _Credentials(http.server.BaseHTTPRequestHandler):
    """A container credentials endpoint that answers only with the authorization token."""

    def do_GET(self):
        ok = self.headers.get("Authorization") == "the-token"
        payload = json.dumps({"AccessKeyId": "testing", "SecretAccessKey": "testing", "Token": "session"}
                             if ok else {"message": "no"}).encode()
        self.send_response(200 if ok else 403)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def credentials_endpoint():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Credentials)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/creds"
    server.shutdown()


def test_the_secrets_manager_secret_is_read_with_the_containers_credentials(moto_endpoint, credentials_endpoint):
    client = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto_endpoint,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    arn = client.create_secret(Name="fahr/job-1", SecretString=json.dumps({"TOK": "v1", "B": "ü"}))["ARN"]
    environ = {launcher.SECRETS_ARN_ENV: arn, "AWS_ENDPOINT_URL": moto_endpoint,
               "AWS_CONTAINER_CREDENTIALS_FULL_URI": credentials_endpoint,
               "AWS_CONTAINER_AUTHORIZATION_TOKEN": "the-token"}
    assert launcher.job_secrets(environ=environ, folder="/nonexistent") == {"TOK": "v1", "B": "ü"}
    # without the token the endpoint refuses: one reason, no value
    with pytest.raises(launcher.SecretsUnavailable, match="container credentials endpoint"):
        launcher.job_secrets(environ={**environ, "AWS_CONTAINER_AUTHORIZATION_TOKEN": ""}, folder="/nonexistent")
    client.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    with pytest.raises(launcher.SecretsUnavailable, match="ResourceNotFoundException.*GetSecretValue"):
        launcher.job_secrets(environ=environ, folder="/nonexistent")


@pytest.mark.parametrize("environ, says", [
    ({launcher.SECRETS_ARN_ENV: "fahr/job"}, "is not the ARN of a Secrets Manager secret"),
    ({launcher.SECRETS_ARN_ENV: "arn:aws:secretsmanager:eu-west-1:1:secret:fahr/j",
      "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.1.1/creds"}, "must be https or on loopback"),
    ({launcher.SECRETS_ARN_ENV: "arn:aws:secretsmanager:eu-west-1:1:secret:fahr/j"}, "no AWS credentials"),
])
def test_what_keeps_the_launcher_from_the_secret_is_said(environ, says):
    with pytest.raises(launcher.SecretsUnavailable, match=says):
        launcher.job_secrets(environ=environ, folder="/nonexistent")
