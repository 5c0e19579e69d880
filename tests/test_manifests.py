"""Manifests: the shipped ones load, and every kind of broken one is refused with its file and field named."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from manifests import MANIFEST_DIR
from tests.conftest import HARMONY_TOOLS
from tools.manifest import ManifestError
from tools.registry import Registry, registered_apps

HARMONY = MANIFEST_DIR / "harmony.yaml"


def write(directory: Path, name: str, manifest: dict) -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def harmony() -> dict:
    return yaml.safe_load(HARMONY.read_text())


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        Registry.load(directory)
    return caught.value.problems


def test_shipped_manifests_load_with_every_tool_bound_to_an_adapter():
    registry = Registry.load(MANIFEST_DIR)
    apps, problems = registered_apps()
    assert problems == []
    # Every shipped manifest is registered through the entry-point group, as an installed app would be.
    assert {path.stem for path in MANIFEST_DIR.glob("*.yaml")} <= {app.id for app in apps} == set(registry.manifests)
    assert {tool.name for tool in registry.tools_of("harmony")} == HARMONY_TOOLS
    assert registry.tools["harmony_create_action_item"].risk.value == "write"
    assert all(t.risk.value == "read" for t in registry.tools_of("harmony") if t.name != "harmony_create_action_item")


VERBS = {
    "send": ("send", "post"),
    "write": ("create", "update", "append"),
    "delete": ("delete", "remove"),
    "read": ("search", "list", "get", "query", "find"),
}


def test_risk_levels_are_honest():
    """Whatever sends or posts is send, whatever creates or updates is write, whatever removes is delete."""
    registry = Registry.load(MANIFEST_DIR)
    for tool in registry.tools.values():
        verb = tool.name.removeprefix(f"{tool.app}_").split("_")[0]
        expected = next(risk for risk, verbs in VERBS.items() if verb in verbs)
        assert tool.risk.value == expected, tool.name


def test_a_missing_field_is_named(tmp_path):
    manifest = harmony()
    del manifest["tools"][1]["risk"]
    path = write(tmp_path, "harmony.yaml", manifest)
    assert f"{path}: tools[1].risk: field required" in problems_of(tmp_path)


def test_a_missing_top_level_field_is_named(tmp_path):
    manifest = harmony()
    del manifest["category"]
    path = write(tmp_path, "harmony.yaml", manifest)
    assert f"{path}: category: field required" in problems_of(tmp_path)


def test_an_invalid_json_schema_is_named_with_its_location(tmp_path):
    manifest = harmony()
    manifest["tools"][0]["input_schema"]["properties"]["limit"]["minimum"] = "one"
    path = write(tmp_path, "harmony.yaml", manifest)
    [problem] = problems_of(tmp_path)
    assert problem.startswith(f"{path}: tools[0].input_schema: invalid JSON Schema at properties/limit/minimum")


def test_an_input_schema_must_describe_an_object(tmp_path):
    manifest = harmony()
    manifest["tools"][2]["input_schema"] = {"type": "string"}
    path = write(tmp_path, "harmony.yaml", manifest)
    assert f'{path}: tools[2].input_schema: must be a JSON Schema of "type": "object"' in problems_of(tmp_path)


def test_an_adapter_module_that_does_not_exist_is_named(tmp_path):
    manifest = harmony()
    manifest["tools"][3]["adapter"] = "nowhere.get_summary"
    path = write(tmp_path, "harmony.yaml", manifest)
    [problem] = problems_of(tmp_path)
    assert problem == (
        f"{path}: tools[3].adapter: no adapter module 'nowhere' "
        "(looked for app 'nowhere' in harmony_companion.apps, tools.adapters.nowhere)"
    )


def test_an_adapter_function_that_does_not_exist_is_named(tmp_path):
    manifest = harmony()
    manifest["tools"][3]["adapter"] = "harmony.get_everything"
    path = write(tmp_path, "harmony.yaml", manifest)
    [problem] = problems_of(tmp_path)
    assert problem == (
        f"{path}: tools[3].adapter: harmony.get_everything is not an async function in tools.adapters.harmony"
    )


def test_a_schema_that_disagrees_with_the_adapter_arguments_is_named(tmp_path):
    manifest = harmony()
    manifest["tools"][0]["input_schema"]["properties"]["owner"] = {"type": "string"}
    path = write(tmp_path, "harmony.yaml", manifest)
    [problem] = problems_of(tmp_path)
    assert problem == f"{path}: tools[0].input_schema: properties ['owner'] unknown to ListMeetings"


def test_a_schema_type_the_adapter_arguments_do_not_take_is_named(tmp_path):
    manifest = harmony()
    manifest["tools"][0]["input_schema"]["properties"]["limit"]["type"] = "string"
    del manifest["tools"][0]["input_schema"]["properties"]["limit"]["minimum"]
    del manifest["tools"][0]["input_schema"]["properties"]["limit"]["maximum"]
    del manifest["tools"][0]["input_schema"]["properties"]["limit"]["default"]
    path = write(tmp_path, "harmony.yaml", manifest)
    [problem] = problems_of(tmp_path)
    assert problem == f"{path}: tools[0].input_schema: properties.limit: type string but ListMeetings takes integer"


def test_a_type_that_disagrees_inside_an_array_is_named(tmp_path):
    manifest = harmony()
    index, tool = action_item(manifest)
    tool["input_schema"]["properties"]["text"] = {"type": "array", "items": {"type": "string"}}
    path = write(tmp_path, "harmony.yaml", manifest)
    assert f"{path}: tools[{index}].input_schema: properties.text: type array but CreateActionItem takes string" in (
        problems_of(tmp_path)
    )


def test_a_nullable_schema_type_needs_a_model_that_takes_null(tmp_path):
    manifest = harmony()
    manifest["tools"][0]["input_schema"]["properties"]["limit"]["type"] = ["integer", "null"]
    path = write(tmp_path, "harmony.yaml", manifest)
    assert problems_of(tmp_path) == [
        f"{path}: tools[0].input_schema: properties.limit: type integer|null but ListMeetings takes integer"
    ]


def test_a_default_that_disagrees_with_the_adapter_arguments_is_named(tmp_path):
    manifest = harmony()
    manifest["tools"][0]["input_schema"]["properties"]["limit"]["default"] = 25
    path = write(tmp_path, "harmony.yaml", manifest)
    assert problems_of(tmp_path) == [
        f"{path}: tools[0].input_schema: properties.limit: default 25 but ListMeetings defaults to 20"
    ]


def test_a_default_where_the_adapter_arguments_have_none_is_named(tmp_path):
    manifest = harmony()
    manifest["tools"][0]["input_schema"]["properties"]["query"]["default"] = "standup"
    path = write(tmp_path, "harmony.yaml", manifest)
    assert problems_of(tmp_path) == [
        f"{path}: tools[0].input_schema: properties.query: default 'standup' but ListMeetings defaults to None"
    ]


def test_a_default_its_own_schema_refuses_is_named(tmp_path):
    manifest = harmony()
    manifest["tools"][0]["input_schema"]["properties"]["limit"]["default"] = 500
    path = write(tmp_path, "harmony.yaml", manifest)
    assert problems_of(tmp_path) == [
        f"{path}: tools[0].input_schema: properties.limit: default 500 is not valid for its own schema"
    ]


@pytest.mark.parametrize("header", ["Authorization", "cookie"])
def test_default_headers_never_carry_credentials(tmp_path, header):
    manifest = harmony()
    manifest["api"] = {"headers": {header: "Bearer pasted-into-a-file"}}
    path = write(tmp_path, "harmony.yaml", manifest)
    assert problems_of(tmp_path) == [
        f"{path}: api.headers: {header}: credentials come from the connection, not from the manifest"
    ]


def test_readme_app_table_lists_every_registered_app_with_its_tools_and_risks():
    """The README's table of connected apps is the registry's, so adding an app means adding its row."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Connected apps", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("| "))
    table = list(itertools.takewhile(lambda line: line.startswith("| "), lines[first:]))
    rows = table[2:]  # below the header and its rule
    documented: dict[str, dict[str, str]] = {}
    for row in rows:
        app = re.search(r"\(`([a-z_]+)`\)", row)[1]
        tools_cell = row.split(" | ")[2]
        documented[app] = {}
        for group in tools_cell.split(";"):
            risk = re.search(r"\((write|send|delete)\)\s*$", group.strip())
            for name in re.findall(r"`([a-z][a-z0-9_]*)`", group):
                documented[app][name] = risk[1] if risk else "read"
    registry = Registry.load(MANIFEST_DIR)
    # Harmony's own data is described above the table; every app a person connects has a row.
    connected = {app for app, manifest in registry.manifests.items() if not manifest.auto_install}
    assert set(documented) == connected
    for app in connected:
        assert documented[app] == {t.name: t.risk.value for t in registry.tools_of(app)}, app


def test_a_duplicate_tool_name_in_one_file_is_named(tmp_path):
    manifest = harmony()
    manifest["tools"][4]["name"] = manifest["tools"][0]["name"]
    path = write(tmp_path, "harmony.yaml", manifest)
    assert f"{path}: tools[4].name: duplicate tool name 'harmony_list_meetings'" in "\n".join(problems_of(tmp_path))


def test_a_duplicate_tool_name_across_files_is_named(tmp_path):
    write(tmp_path, "a_harmony.yaml", harmony())
    copy = harmony()
    copy["id"] = "harmony_copy"
    copy["tools"] = [dict(copy["tools"][0], name="harmony_copy_list")]
    write(tmp_path, "b_copy.yaml", copy)
    again = harmony()
    again["id"] = "harmony"
    path = write(tmp_path, "c_again.yaml", again)
    [problem] = problems_of(tmp_path)
    assert problem.startswith(f"{path}: id: duplicate app id 'harmony'")


def test_tool_names_must_carry_the_app_prefix(tmp_path):
    manifest = harmony()
    manifest["tools"][0]["name"] = "list_meetings"
    path = write(tmp_path, "harmony.yaml", manifest)
    assert problems_of(tmp_path) == [f"{path}: tools[0].name: 'list_meetings' must start with the app id, 'harmony_'"]


def test_broken_yaml_is_named(tmp_path):
    (tmp_path / "broken.yaml").write_text("id: [unclosed\n")
    [problem] = problems_of(tmp_path)
    assert problem.startswith(f"{tmp_path / 'broken.yaml'}: not valid YAML")


def test_a_url_setup_field_must_list_allowed_hosts(tmp_path):
    manifest = harmony()
    manifest["auth"] = {"type": "api_key", "fields": [{"name": "instance_url", "label": "Instance", "type": "url"}]}
    path = write(tmp_path, "harmony.yaml", manifest)
    assert any(p.startswith(f"{path}: auth.fields[0]: a url field needs allowed_hosts") for p in problems_of(tmp_path))


def test_every_broken_file_and_adapter_is_reported_at_once(tmp_path):
    broken = harmony()
    del broken["tools"][0]["title"]
    write(tmp_path, "a.yaml", broken)
    other = harmony()
    other["id"] = "meetings"
    other["tools"] = [dict(t, name=t["name"].replace("harmony_", "meetings_")) for t in other["tools"][:3]]
    other["tools"][1]["adapter"] = "harmony.missing"
    other["tools"][2]["adapter"] = "harmony.also_missing"
    write(tmp_path, "b.yaml", other)
    assert len(problems_of(tmp_path)) == 3


def test_cli_validate_reports_ok_for_the_shipped_manifests():
    result = subprocess.run(
        [sys.executable, "-m", "server", "manifests", "validate"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    registry = Registry.load(MANIFEST_DIR)
    assert result.stdout.startswith(f"ok: {len(registry.manifests)} apps, {len(registry.tools)} tools in ")


def test_cli_validate_fails_with_one_line_per_problem_and_no_traceback(tmp_path):
    shutil.copy(HARMONY, tmp_path / "harmony.yaml")
    manifest = harmony()
    del manifest["tools"][0]["output_schema"]
    write(tmp_path, "harmony.yaml", manifest)
    result = subprocess.run(
        [sys.executable, "-m", "server", "manifests", "validate", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'harmony.yaml'}: tools[0].output_schema: field required"
    assert "Traceback" not in result.stderr


# -- recipients, shown and canonical forms -------------------------------------------------------------

EGRESS = {
    "gmail_send_email": ("to", "cc", "bcc"),
    "gmail_create_draft": ("to", "cc", "bcc"),
    "email_send_email": ("to", "cc", "bcc", "reply_to"),
    "gcal_create_event": ("attendees",),
    "slack_post_message": ("channel",),
}


def action_item(manifest: dict) -> tuple[int, dict]:
    index = next(i for i, t in enumerate(manifest["tools"]) if t["name"] == "harmony_create_action_item")
    return index, manifest["tools"][index]


def test_every_shipped_tool_that_acts_declares_its_recipients_and_what_a_person_sees():
    registry = Registry.load(MANIFEST_DIR)
    acting = [tool for tool in registry.tools.values() if tool.risk.value != "read"]
    assert all(tool.spec.recipients is not None and tool.spec.shown is not None for tool in acting)
    assert {tool.name: tool.egress for tool in acting if tool.egress} == EGRESS


def test_egress_defaults_to_the_arguments_that_hold_addresses(tmp_path):
    manifest = harmony()
    _, tool = action_item(manifest)
    del tool["recipients"], tool["remember"]  # what remember keeps must then cover the inferred recipients
    write(tmp_path, "harmony.yaml", manifest)
    assert Registry.load(tmp_path).tools["harmony_create_action_item"].egress == ("assignee_email",)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("recipients", ["nobody"], "recipients[0]: 'nobody'"),
        ("recipients", ["text.inner"], "recipients[0]: 'text.inner'"),
        ("shown", ["text", "due"], "shown[1]: 'due'"),
        ("canonical", {"owner": "harmony.nothing_here"}, "canonical.owner: 'owner'"),
    ],
)
def test_recipients_shown_and_canonical_must_name_arguments(tmp_path, field, value, named):
    manifest = harmony()
    index, tool = action_item(manifest)
    tool[field] = value
    path = write(tmp_path, "harmony.yaml", manifest)
    assert problems_of(tmp_path) == [
        f"{path}: tools[{index}]: {named} is not an argument of harmony_create_action_item"
    ]


def test_what_remember_keeps_must_cover_every_recipient(tmp_path):
    """A remembered approval must never reach someone the approved call did not."""
    manifest = harmony()
    index, tool = action_item(manifest)
    tool["recipients"] = ["assignee_email"]
    tool["remember"] = [{"arg": "meeting_id"}]
    path = write(tmp_path, "harmony.yaml", manifest)
    assert problems_of(tmp_path) == [
        f"{path}: tools[{index}]: remember: keeps nothing of the recipient argument 'assignee_email' of "
        "harmony_create_action_item"
    ]


@pytest.mark.parametrize("reference", ["harmony.nothing_here", "harmony.create_action_item", "nowhere.text"])
def test_a_canonical_form_must_be_a_plain_function_of_the_app(tmp_path, reference):
    manifest = harmony()
    index, tool = action_item(manifest)
    tool["canonical"] = {"text": reference}
    path = write(tmp_path, "harmony.yaml", manifest)
    assert problems_of(tmp_path) == [
        f"{path}: tools[{index}].canonical.text: {reference} is not a function (str) -> str"
    ]


def test_a_resolved_argument_must_say_which_values_rules_may_name(tmp_path):
    """Without a rule form, a rule naming the unresolved form (a Slack channel id) would save and never match."""
    manifest = harmony()
    index, tool = action_item(manifest)
    tool["resolve"] = {"text": "harmony.create_action_item"}
    path = write(tmp_path, "harmony.yaml", manifest)
    assert problems_of(tmp_path) == [
        f"{path}: tools[{index}]: resolve.text: needs rule_form.text, saying which values rules may name"
    ]


def test_a_resolver_must_be_an_async_function_of_the_app(tmp_path):
    manifest = harmony()
    index, tool = action_item(manifest)
    tool["resolve"] = {"text": "harmony.nothing_here"}
    tool["rule_form"] = {"text": "harmony.nothing_here"}
    path = write(tmp_path, "harmony.yaml", manifest)
    assert problems_of(tmp_path) == [
        f"{path}: tools[{index}].resolve.text: harmony.nothing_here is not an async function (ctx, str) -> str",
        f"{path}: tools[{index}].rule_form.text: harmony.nothing_here is not a function (str) -> str",
    ]
