"""Exporting a fine-tune for other runtimes: what each archive holds, line by line, who may download it, when it is
refused, and GGUF through a stand-in for llama.cpp's converter."""

import io
import json
import shlex
import textwrap
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from curation.models import AuditEvent
from tests.factories import UserFactory
from training.evaluation.gate import GateRule, gate_record
from training.exports.runtimes import vllm_max_lora_rank
from training.exports.services import finetune_gguf_convert
from training.finetunes.deletion import finetune_weights_delete
from training.finetunes.runner import finetune_reap
from training.models import EvaluationRun, FineTuneJob, FineTuneStatus

pytestmark = pytest.mark.django_db


def succeed(job: FineTuneJob, *, method: str = "lora") -> FineTuneJob:
    """What a worker leaves: an adapter of rank 8 in safetensors with its tokenizer (or full weights), and losses."""
    job.adapter_dir.mkdir(parents=True)
    if method in ("lora", "qlora"):
        (job.adapter_dir / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 16}))
        (job.adapter_dir / "adapter_model.safetensors").write_bytes(bytes(3000))
    else:
        (job.adapter_dir / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
        (job.adapter_dir / "model.safetensors").write_bytes(bytes(5000))
    (job.adapter_dir / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    evaluation = {"base": {"eval_loss": 2.0}, "tuned": {"eval_loss": 1.25}}
    FineTuneJob.objects.filter(pk=job.pk).update(
        status=FineTuneStatus.SUCCEEDED, method=method, evaluation=evaluation, finished_at=timezone.now()
    )
    job.refresh_from_db()
    return job


def unzip(response) -> zipfile.ZipFile:
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "application/zip"
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def export(client, job: FineTuneJob, fmt: str):
    return client.get(f"/api/v1/finetunes/{job.pk}/export?format={fmt}")


# --- vLLM --------------------------------------------------------------------------------------------------


def test_the_vllm_export_holds_the_adapter_and_the_exact_command_lines(key_client, job):
    succeed(job)

    archive = unzip(export(key_client, job, "vllm"))

    root = f"finetune-{job.pk}-vllm"
    assert sorted(archive.namelist()) == [
        f"{root}/adapter/adapter_config.json", f"{root}/adapter/adapter_model.safetensors",
        f"{root}/adapter/tokenizer_config.json", f"{root}/logtune.json", f"{root}/vllm.txt",
    ]  # fmt: skip
    lines = archive.read(f"{root}/vllm.txt").decode().splitlines()
    name = f"finetune-{job.pk}"
    assert f"vllm serve /models/tiny --enable-lora --lora-modules {name}=./adapter --max-lora-rank 8" in lines
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve /models/tiny --enable-lora --max-lora-rank 8" in lines
    load = (
        'curl -X POST http://localhost:8000/v1/load_lora_adapter -H "Content-Type: application/json" '
        f'-d "{{\\"lora_name\\": \\"{name}\\", \\"lora_path\\": \\"$PWD/adapter\\"}}"'
    )
    assert load in lines
    assert "# /models/tiny is a folder on the Logtune server: copy the base model there, or name its hub id." in lines


def test_the_vllm_lora_modules_path_is_a_folder_of_the_zip_holding_the_adapter(key_client, job):
    succeed(job)

    archive = unzip(export(key_client, job, "vllm"))

    root = f"finetune-{job.pk}-vllm"
    serve = next(line for line in archive.read(f"{root}/vllm.txt").decode().splitlines() if "--lora-modules" in line)
    words = shlex.split(serve)
    _, path = words[words.index("--lora-modules") + 1].split("=", 1)
    folder = f"{root}/{path.removeprefix('./')}/"
    assert {f"{folder}adapter_config.json", f"{folder}adapter_model.safetensors"} <= set(archive.namelist())
    # The runtime-load variant names the same folder.
    assert any('$PWD/adapter\\"' in line for line in archive.read(f"{root}/vllm.txt").decode().splitlines())


@pytest.mark.parametrize(("rank", "flag"), [(1, 1), (4, 8), (8, 8), (12, 16), (320, 320), (400, 512), (600, None)])
def test_the_max_lora_rank_is_the_smallest_vllm_accepts_that_holds_the_adapter(rank, flag):
    assert vllm_max_lora_rank(rank) == flag


def test_a_full_fine_tune_exports_its_weights_and_vllm_serves_them(key_client, job):
    succeed(job, method="full")

    archive = unzip(export(key_client, job, "vllm"))

    root = f"finetune-{job.pk}-vllm"
    assert f"{root}/model/model.safetensors" in archive.namelist()
    lines = archive.read(f"{root}/vllm.txt").decode().splitlines()
    assert f"vllm serve ./model --served-model-name finetune-{job.pk}" in lines
    assert not any("--enable-lora" in line for line in lines)


# --- Ollama ------------------------------------------------------------------------------------------------


def modelfile(text: str) -> list[tuple[str, str]]:
    """(instruction, argument) of each line of a Modelfile that is not a comment, as Ollama reads them."""
    rows = [line.split(None, 1) for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [(row[0].upper(), row[1]) for row in rows]


def test_the_ollama_export_holds_a_modelfile_whose_adapter_is_in_the_zip(key_client, job):
    succeed(job)

    archive = unzip(export(key_client, job, "ollama"))

    root = f"finetune-{job.pk}-ollama"
    text = archive.read(f"{root}/Modelfile").decode()
    instructions = modelfile(text)
    assert instructions == [("FROM", "/models/tiny"), ("ADAPTER", "./adapter")]
    assert text.splitlines()[0] == "FROM /models/tiny"
    assert f"{root}/adapter/adapter_model.safetensors" in archive.namelist()
    assert f"{root}/adapter/adapter_config.json" in archive.namelist()
    assert "# No TEMPLATE: Ollama uses the chat template of the model named in FROM." in text.splitlines()
    assert f"# ollama create finetune-{job.pk} -f Modelfile && ollama run finetune-{job.pk}" in text.splitlines()


def test_a_full_fine_tune_is_ollamas_model_itself(key_client, job):
    succeed(job, method="full")

    archive = unzip(export(key_client, job, "ollama"))

    root = f"finetune-{job.pk}-ollama"
    assert modelfile(archive.read(f"{root}/Modelfile").decode()) == [("FROM", "./model")]
    assert f"{root}/model/model.safetensors" in archive.namelist()


def test_ollama_is_refused_an_adapter_without_safetensors(key_client, job):
    succeed(job)
    (job.adapter_dir / "adapter_model.safetensors").rename(job.adapter_dir / "adapter_model.bin")

    response = export(key_client, job, "ollama")

    assert response.status_code == 409 and "safetensors" in response.json()["detail"]


# --- Merged ------------------------------------------------------------------------------------------------


def test_merged_weights_are_refused_until_a_merge_ran(key_client, job):
    succeed(job)
    before = export(key_client, job, "merged")
    job.merged_dir.mkdir(parents=True)
    (job.merged_dir / "model.safetensors").write_bytes(bytes(4000))
    FineTuneJob.objects.filter(pk=job.pk).update(merge_status=FineTuneStatus.SUCCEEDED)

    archive = unzip(export(key_client, job, "merged"))

    assert before.status_code == 409
    assert before.json() == {
        "detail": f"Fine-tune {job.pk} has no merged weights: merge its adapter into the base model first (POST "
        f"/api/v1/finetunes/{job.pk}/merge, or Merge on its page).",
        "status": "succeeded",
    }
    root = f"finetune-{job.pk}-merged"
    assert sorted(archive.namelist()) == [f"{root}/logtune.json", f"{root}/model/model.safetensors"]


def test_a_full_fine_tune_exports_its_own_weights_as_merged(key_client, job):
    succeed(job, method="full")

    archive = unzip(export(key_client, job, "merged"))

    root = f"finetune-{job.pk}-merged"
    assert f"{root}/model/model.safetensors" in archive.namelist()


# --- logtune.json ------------------------------------------------------------------------------------------


def test_every_archive_carries_logtune_json_with_what_the_fine_tune_is_and_how_it_did(key_client, job, settings):
    succeed(job)
    results = {"examples": 40, "judge": {"teacher": {"win_rate": {"value": 0.55, "low": 0.45, "high": 0.65, "n": 40}}},
               "metrics": {"tuned": {"rouge_l": {"value": 0.5, "low": 0.4, "high": 0.6, "n": 40}}}}  # fmt: skip
    results["gate"] = gate_record(GateRule(min_judged_examples=10), results)
    run = EvaluationRun.objects.create(job=job, status=FineTuneStatus.SUCCEEDED, results=results)

    archives = {fmt: unzip(export(key_client, job, fmt)) for fmt in ("vllm", "ollama")}

    manifest = json.loads(archives["vllm"].read(f"finetune-{job.pk}-vllm/logtune.json"))
    exported = manifest.pop("exported_at")
    assert manifest == {
        "finetune": job.pk,
        "project": "acme",
        "base_model": {"name": "tiny", "path": "/models/tiny"},
        "method": "lora",
        "hyperparameters": job.hyperparameters,
        "snapshot": {"id": job.snapshot_id, "sha256": job.snapshot.sha256},
        "dataset": "Math",
        "metrics": {
            "eval_loss": 1.25,
            "base_eval_loss": 2.0,
            "evaluation": {
                "id": run.pk, "finished_at": None, "examples": 40,
                "teacher_win_rate": {"value": 0.55, "low": 0.45, "high": 0.65, "n": 40},
                "base_win_rate": None, "retention_loss_change": None,
                "metrics": {"rouge_l": {"value": 0.5, "low": 0.4, "high": 0.6, "n": 40}},
            },
            "gate": {"passed": results["gate"]["passed"], "evaluation": run.pk, "checks": results["gate"]["checks"]},
        },
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat(),
        "format": "vllm",
    }  # fmt: skip
    assert abs(timezone.datetime.fromisoformat(exported) - timezone.now()) < timedelta(minutes=1)
    assert json.loads(archives["ollama"].read(f"finetune-{job.pk}-ollama/logtune.json"))["format"] == "ollama"


def test_logtune_json_names_a_base_model_in_the_data_folder_by_its_place_there(key_client, job, settings):
    base = Path(settings.MEDIA_ROOT) / "models" / "tiny"
    FineTuneJob.objects.filter(pk=job.pk).update(model=str(base))
    succeed(job)

    archive = unzip(export(key_client, job, "vllm"))

    root = f"finetune-{job.pk}-vllm"
    assert json.loads(archive.read(f"{root}/logtune.json"))["base_model"]["path"] == "models/tiny"
    for name in archive.namelist():
        if not name.endswith(".safetensors"):
            assert str(settings.MEDIA_ROOT) not in archive.read(name).decode(), name


# --- Who may, and when -------------------------------------------------------------------------------------


def test_an_outsider_gets_404_and_a_viewer_is_refused_as_for_the_adapter_download(client_for, outsider, viewer, job):
    succeed(job)

    outside = client_for(outsider).get(f"/api/v1/finetunes/{job.pk}/export?format=vllm&project=acme")
    crossed = client_for(outsider).get(f"/api/v1/finetunes/{job.pk}/export?format=vllm&project=other")
    viewed = client_for(viewer).get(f"/api/v1/finetunes/{job.pk}/export?format=vllm&project=acme")
    adapter = client_for(viewer).get(f"/api/v1/finetunes/{job.pk}/adapter?project=acme")

    assert (outside.status_code, crossed.status_code) == (404, 404)
    assert viewed.status_code == adapter.status_code == 403
    assert not AuditEvent.objects.filter(action="finetune.download").exists()


def test_an_editor_downloads_and_the_audit_log_names_them_and_the_format(client_for, editor, job):
    succeed(job)

    unzip(client_for(editor).get(f"/api/v1/finetunes/{job.pk}/export?format=ollama&project=acme"))

    event = AuditEvent.objects.get(action="finetune.download")
    assert event.actor == editor
    assert event.detail == {"job_id": job.pk, "what": f"finetune-{job.pk}-ollama", "format": "ollama"}


def test_a_job_without_weights_is_409_and_an_unknown_format_400(key_client, job):
    queued = export(key_client, job, "vllm")
    succeed(job)
    unknown = export(key_client, job, "onnx")
    missing = key_client.get(f"/api/v1/finetunes/{job.pk}/export")
    finetune_weights_delete(job=job)
    deleted = export(key_client, job, "vllm")

    assert queued.status_code == 409 and queued.json()["status"] == "queued"
    assert (
        queued.json()["detail"] == f"Fine-tune {job.pk} is queued: only a succeeded fine-tune has weights to export."
    )
    assert unknown.status_code == missing.status_code == 400
    assert unknown.json() == {"format": ["One of vllm, ollama, merged, gguf."]}
    assert deleted.status_code == 409 and "were deleted" in deleted.json()["detail"]
    assert not AuditEvent.objects.filter(action="finetune.download").exists()


# --- GGUF --------------------------------------------------------------------------------------------------


def test_without_llama_cpp_gguf_is_refused_naming_the_setting(key_client, job, settings):
    settings.LOGTUNE_LLAMA_CPP_DIR = ""
    succeed(job)

    download = export(key_client, job, "gguf")
    convert = key_client.post(f"/api/v1/finetunes/{job.pk}/gguf")

    assert download.status_code == convert.status_code == 409
    for response in (download, convert):
        assert "set LOGTUNE_LLAMA_CPP_DIR to a llama.cpp folder" in response.json()["detail"]
    assert FineTuneJob.objects.get(pk=job.pk).gguf_status == ""


def test_a_llama_cpp_folder_without_its_converters_is_named_as_such(key_client, job, settings, tmp_path):
    settings.LOGTUNE_LLAMA_CPP_DIR = str(tmp_path)
    succeed(job)

    response = export(key_client, job, "gguf")

    assert response.status_code == 409
    assert "without convert_lora_to_gguf.py and convert_hf_to_gguf.py" in response.json()["detail"]


# Writes its arguments into the output file, as a stand-in for llama.cpp's converters (which write GGUF).
STAND_IN = textwrap.dedent("""
    import argparse, json, os, sys
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--base")
    parser.add_argument("--outfile", required=True)
    parser.add_argument("--outtype")
    args = parser.parse_args()
    config = os.path.join(args.path, "adapter_config.json")
    if os.path.exists(config) and "fail" in open(config).read():
        print("Model MysteryForCausalLM is not supported", file=sys.stderr)
        sys.exit(1)
    with open(args.outfile, "wb") as out:
        out.write(b"GGUF" + json.dumps({"script": sys.argv[0].rsplit("/", 1)[-1], "args": sys.argv[1:]}).encode())
""")


@pytest.fixture
def llama_cpp(tmp_path, settings) -> Path:
    """A llama.cpp folder holding stand-in converters and its own gguf-py, named by the setting."""
    folder = tmp_path / "llama.cpp"
    (folder / "gguf-py" / "gguf").mkdir(parents=True)
    (folder / "gguf-py" / "gguf" / "__init__.py").write_text("")
    for name in ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py"):
        (folder / name).write_text(STAND_IN)
    settings.LOGTUNE_LLAMA_CPP_DIR = str(folder)
    return folder


def test_a_conversion_is_queued_once_then_run_and_the_gguf_downloaded(
    key_client, job, llama_cpp, tmp_path, django_capture_on_commit_callbacks
):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    FineTuneJob.objects.filter(pk=job.pk).update(model=str(base))
    succeed(job)
    early = export(key_client, job, "gguf")
    with django_capture_on_commit_callbacks() as queued:
        first = key_client.post(f"/api/v1/finetunes/{job.pk}/gguf")
        second = key_client.post(f"/api/v1/finetunes/{job.pk}/gguf")

    finetune_gguf_convert(job_id=job.pk)
    finetune_gguf_convert(job_id=job.pk)  # a second delivery finds it done

    assert early.status_code == 409 and "convert it first" in early.json()["detail"]
    assert (first.status_code, first.json()["gguf_status"], second.status_code) == (202, "queued", 202)
    assert len(queued) == 1 and AuditEvent.objects.filter(action="finetune.gguf").count() == 1
    job.refresh_from_db()
    assert (job.gguf_status, job.gguf_error) == ("succeeded", "")
    archive = unzip(export(key_client, job, "gguf"))
    root, name = f"finetune-{job.pk}-gguf", f"finetune-{job.pk}-lora.gguf"
    assert sorted(archive.namelist()) == sorted([f"{root}/Modelfile", f"{root}/llama.cpp.txt", f"{root}/logtune.json",
                                                 f"{root}/{name}"])  # fmt: skip
    made = json.loads(archive.read(f"{root}/{name}")[4:])
    assert made["script"] == "convert_lora_to_gguf.py"
    assert made["args"][:2] == ["--base", str(base)] and made["args"][-1] == str(job.adapter_dir)
    assert modelfile(archive.read(f"{root}/Modelfile").decode()) == [("FROM", str(base)), ("ADAPTER", f"./{name}")]
    assert f"llama-server -m BASE.gguf --lora ./{name}" in archive.read(f"{root}/llama.cpp.txt").decode().splitlines()


def test_a_full_fine_tune_is_converted_whole(key_client, job, llama_cpp):
    succeed(job, method="full")
    FineTuneJob.objects.filter(pk=job.pk).update(gguf_status=FineTuneStatus.QUEUED)

    finetune_gguf_convert(job_id=job.pk)

    archive = unzip(export(key_client, job, "gguf"))
    root, name = f"finetune-{job.pk}-gguf", f"finetune-{job.pk}.gguf"
    assert json.loads(archive.read(f"{root}/{name}")[4:])["script"] == "convert_hf_to_gguf.py"
    assert f"llama-server -m ./{name}" in archive.read(f"{root}/llama.cpp.txt").decode().splitlines()


def test_a_failed_conversion_says_why_and_can_be_asked_for_again(key_client, job, llama_cpp, tmp_path):
    (tmp_path / "base").mkdir()
    FineTuneJob.objects.filter(pk=job.pk).update(model=str(tmp_path / "base"), gguf_status=FineTuneStatus.QUEUED)
    succeed(job)
    (job.adapter_dir / "adapter_config.json").write_text('{"r": 8, "fail": true}')

    finetune_gguf_convert(job_id=job.pk)

    job.refresh_from_db()
    assert job.gguf_status == "failed"
    assert "convert_lora_to_gguf.py failed (exit code 1)" in job.gguf_error
    assert "MysteryForCausalLM is not supported" in job.gguf_error
    assert "The last conversion failed" in export(key_client, job, "gguf").json()["detail"]
    assert key_client.post(f"/api/v1/finetunes/{job.pk}/gguf").json()["gguf_status"] == "queued"


def test_a_base_model_neither_on_disk_nor_in_the_hub_cache_fails_the_conversion(job, llama_cpp, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    FineTuneJob.objects.filter(pk=job.pk).update(model="acme/never-downloaded", gguf_status=FineTuneStatus.QUEUED)
    succeed(job)

    finetune_gguf_convert(job_id=job.pk)

    job.refresh_from_db()
    assert job.gguf_status == "failed"
    assert job.gguf_error.startswith("The config of the base model acme/never-downloaded is not on this worker")


def test_weights_are_not_deleted_while_a_conversion_runs_and_the_gguf_goes_with_them(job, llama_cpp):
    succeed(job, method="full")
    FineTuneJob.objects.filter(pk=job.pk).update(gguf_status=FineTuneStatus.RUNNING)
    with pytest.raises(Exception, match="being converted to GGUF"):
        finetune_weights_delete(job=job)
    FineTuneJob.objects.filter(pk=job.pk).update(gguf_status=FineTuneStatus.QUEUED)
    job.refresh_from_db()
    with pytest.raises(Exception, match="being converted to GGUF"):
        finetune_weights_delete(job=job)
    FineTuneJob.objects.filter(pk=job.pk).update(gguf_status=FineTuneStatus.QUEUED)
    finetune_gguf_convert(job_id=job.pk)
    job.refresh_from_db()

    plan = finetune_weights_delete(job=job)

    assert "gguf" in [item.name for item in plan.weights]


def test_the_reaper_fails_a_conversion_whose_worker_stopped(job, settings):
    late = timezone.now() - timedelta(seconds=settings.LOGTUNE_GPU_TASK_TIMEOUT_S + 700)
    FineTuneJob.objects.filter(pk=job.pk).update(gguf_status=FineTuneStatus.RUNNING, gguf_started_at=late)

    finetune_reap()

    job.refresh_from_db()
    assert (job.gguf_status, job.gguf_error) == ("failed", "The GPU worker converting it to GGUF stopped.")


# --- The page ----------------------------------------------------------------------------------------------


def test_the_page_offers_each_export_to_an_editor_and_says_how_to_enable_gguf(client, editor, job, settings):
    settings.LOGTUNE_LLAMA_CPP_DIR = ""
    succeed(job)
    client.force_login(editor)

    page = client.get(f"/p/acme/finetunes/{job.pk}/").content.decode()

    for fmt in ("vllm", "ollama"):
        assert f"/api/v1/finetunes/{job.pk}/export?project=acme&amp;format={fmt}" in page
    assert "export?project=acme&amp;format=merged" not in page
    assert "merge its adapter into the base model first" in page
    assert "set LOGTUNE_LLAMA_CPP_DIR to a llama.cpp folder" in page


def test_an_editor_converts_to_gguf_from_the_page(client, editor, job, llama_cpp, django_capture_on_commit_callbacks):
    succeed(job)
    client.force_login(editor)
    before = client.get(f"/p/acme/finetunes/{job.pk}/").content.decode()

    with django_capture_on_commit_callbacks() as queued:
        response = client.post(f"/p/acme/finetunes/{job.pk}/gguf")

    assert f'action="/p/acme/finetunes/{job.pk}/gguf"' in before
    assert response.status_code == 302 and len(queued) == 1
    assert FineTuneJob.objects.get(pk=job.pk).gguf_status == "queued"
    assert AuditEvent.objects.get(action="finetune.gguf").actor == editor


def test_a_viewer_sees_no_export_links(client, job, project):
    viewer = UserFactory(username="vic", memberships=[(project, "viewer")])
    succeed(job)
    client.force_login(viewer)

    page = client.get(f"/p/acme/finetunes/{job.pk}/").content.decode()

    assert "/export?" not in page and "Exports need the editor role" in page
    assert client.post(f"/p/acme/finetunes/{job.pk}/gguf").status_code in (403, 404)


# --- A real adapter ----------------------------------------------------------------------------------------


def test_a_peft_adapter_exported_for_vllm_loads_back_from_the_zip(key_client, job, tiny_model, tmp_path):
    """An adapter saved by PEFT (rank 4), exported: vLLM is given the smallest rank it accepts above 4, and the
    adapter folder the line names loads onto the base model as it is in the zip."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    tuned = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    tuned.save_pretrained(job.adapter_dir)
    FineTuneJob.objects.filter(pk=job.pk).update(status=FineTuneStatus.SUCCEEDED, model=str(tiny_model))

    archive = unzip(export(key_client, job, "vllm"))
    archive.extractall(tmp_path / "out")

    folder = tmp_path / "out" / f"finetune-{job.pk}-vllm"
    serve = next(line for line in (folder / "vllm.txt").read_text().splitlines() if "--lora-modules" in line)
    words = shlex.split(serve)
    assert words[words.index("--max-lora-rank") + 1] == "8"
    adapter = folder / words[words.index("--lora-modules") + 1].split("=", 1)[1]
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter)
    assert loaded.peft_config["default"].r == 4
