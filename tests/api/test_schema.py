import yaml
from django.core.management import call_command


def test_the_openapi_schema_validates_and_lists_the_artist_and_agent_endpoints(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--file", str(out))
    paths = yaml.safe_load(out.read_text())["paths"]
    for path in (
        "/api/v1/jobs/",
        "/api/v1/jobs/{job_id}/accept/",
        "/api/v1/nodes/",
        "/api/v1/agent/hello/",
        "/api/v1/agent/leases/{lease_id}/report/",
    ):
        assert path in paths, sorted(paths)
