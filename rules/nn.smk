# The network stage (included by the Snakefile): features, training, hybrid decoding, paper tables.
# A network is named by its key under nn.models (exp/<recipe>/nn/<name>/); the paper's rows are added as
# models named t<table>r<row> (e.g. t3r2) with widths scaled by nn.tables.width_scale.
from senone.nn.paper import paper_rows

NN = CFG.get("nn") or {}
NN_FEATS = f"{DATA}/feats/nn"
NN_DIR = f"{EXP}/nn"
NN_DEFAULT = NN.get("default")
NN_TABLES = NN.get("tables") or {}
PAPER_MODELS = {
    f"t{r.table}r{r.index}": {"spec": r.spec, "width_scale": NN_TABLES.get("width_scale", 1.0),
                              "train": NN_TABLES.get("train") or {},
                              "description": f"paper Table {r.table}, row {r.index}"}
    for r in paper_rows()
}
NN_MODELS = {**PAPER_MODELS, **(NN.get("models") or {})}


# nn settings only decoding reads: changing them re-runs the decodes, never the training
NN_DECODE_ONLY = ("prior_scale", "max_loglike_memory_gb")


def nn_conf(model, stage="decode"):
    """The settings one network's `stage` (train or decode) depends on: other networks' entries, and for
    training the decoding settings, do not re-run it."""
    drop = ("models", "tables", "decode") + (NN_DECODE_ONLY if stage == "train" else ())
    shared = {k: v for k, v in NN.items() if k not in drop}
    conf = {"nn": {**shared, "models": {model: NN_MODELS[model]}}, "features": {"nn": CFG["features"]["nn"]}}
    if stage == "decode":
        decode = {**CFG["decode"], **(NN.get("decode") or {})}
        if model in PAPER_MODELS and model not in (NN.get("models") or {}):
            decode.update(NN_TABLES.get("decode") or {})  # the paper's rows: nn.tables.decode over nn.decode
        conf.update({"decode": decode, "language": LANGUAGE, "lang": CFG["lang"]})
    return json.dumps(conf, ensure_ascii=False, sort_keys=True)


def nn_cmvn(split):
    """Global CMVN normalises every split with the training statistics."""
    stats_split = "train" if CFG["features"]["nn"].get("cmvn", "speaker") == "global" else split
    return f"{NN_FEATS}/cmvn_{stats_split}.npz"


# nn.fmllr_features: the alignment stage (a SAT system) adds its speaker-adapted features to every network's input
NN_FMLLR = bool(NN.get("fmllr_features"))
if NN_FMLLR and CFG["gmm"].get(ALI_FROM, {}).get("kind") != "sat":
    sys.exit(f"error: nn.fmllr_features needs a SAT stage to take the adapted features from, but the networks' "
             f"alignments come from {ALI_FROM}; set nn.alignments_from to a SAT system or nn.fmllr_features: false")


def nn_fmllr_inputs(split):
    """The GMM features of `split` and that split's fMLLR transforms (SAT training, or the SAT stage's decode)."""
    if not NN_FMLLR:
        return []
    transforms = f"{EXP}/{ALI_FROM}/final.mdl" if split == "train" else f"{EXP}/{ALI_FROM}/decode_{split}/{METRIC}.txt"
    return [f"{FEATS}/cuts_{split}.jsonl.gz", f"{FEATS}/cmvn_{split}.npz", transforms]


def nn_fmllr_args(split):
    """The step options that go with nn_fmllr_inputs(split)."""
    if not NN_FMLLR:
        return ""
    if split == "train":
        return f"--fmllr-stage {EXP}/{ALI_FROM} --gmm-feats {FEATS}"
    return (f"--gmm-feats {FEATS}/cuts_{split}.jsonl.gz --cmvn {FEATS}/cmvn_{split}.npz "
            f"--transform-dir {EXP}/{ALI_FROM}/decode_{split}")


def nn_launcher():
    """One process, or torchrun with nn.processes workers (DistributedDataParallel)."""
    n = int(NN.get("processes", 1))
    if n > 1:
        import torch  # only here: a one-process recipe does not pay for the import

        from senone.nn.stage import training_processes

        n = training_processes(n, torch.cuda.device_count())
    if n <= 1:
        return f"{STEP}.train_nn"
    return STEP[: -len("-m steps")] + f"-m torch.distributed.run --standalone --nproc_per_node {n} -m steps.train_nn"


rule nn_train:
    """Train one network of nn.models on the senone alignments (resumes at its last epoch)."""
    input:
        cuts=f"{NN_FEATS}/cuts_train.jsonl.gz",
        cmvn=f"{NN_FEATS}/cmvn_train.npz",
        ali=f"{EXP}/senone_ali/pdf.ark",
        senones=f"{EXP}/senone_ali/senones.json",
        valid=[NN_VALID_FROM] if NN_VALID_FROM else [],  # nn.valid_from: the validation utterances, when listed
        fmllr=nn_fmllr_inputs("train"),
    output:
        model=f"{NN_DIR}/{{model}}/final.pt",
        counts=f"{NN_DIR}/{{model}}/pdf_counts.txt",
        info=f"{NN_DIR}/{{model}}/model.json",
    params:
        conf=lambda wc: nn_conf(wc.model, "train"),
        launcher=lambda wc: nn_launcher(),  # when a network is in the DAG: only then is torch imported
        fmllr=nn_fmllr_args("train"),
        # appended to across a resume (a `log:` file would be deleted by Snakemake before the resumed job)
        log=f"{NN_DIR}/{{model}}/log/train.log",
    threads: workflow.cores
    benchmark:
        f"{EXP}/benchmarks/nn_{{model}}.tsv"
    shell:
        # checkpoints/finished: the checkpoints are of a run that finished, so this run (forced, or its outputs
        # removed) trains afresh instead of resuming after the last epoch; a killed run has no such file and resumes
        "if [ -e {NN_DIR}/{wildcards.model}/checkpoints/finished ]; then rm -rf {NN_DIR}/{wildcards.model}/checkpoints; fi; "
        "{params.launcher} --conf '{params.conf}' --model {wildcards.model} --feats-dir {NN_FEATS} "
        "--ali {input.ali} --senones {input.senones} {params.fmllr} --out {NN_DIR}/{wildcards.model} --threads {threads} "
        "--log-file {params.log} && touch {NN_DIR}/{wildcards.model}/checkpoints/finished"


rule nn_decode_dev:
    """Hybrid decoding of dev through the alignment stage's HCLG, LM weight swept."""
    input:
        model=f"{NN_DIR}/{{model}}/final.pt",
        hclg=f"{EXP}/{ALI_FROM}/graph/HCLG.fst",
        feats=f"{NN_FEATS}/cuts_dev.jsonl.gz",
        cmvn=nn_cmvn("dev"),
        cuts=cuts("dev"),
        fmllr=nn_fmllr_inputs("dev"),
    output:
        score=f"{NN_DIR}/{{model}}/decode_dev/{METRIC}.txt",
        best=f"{NN_DIR}/{{model}}/decode_dev/best_lm_weight.json",
    params:
        conf=lambda wc: nn_conf(wc.model),
        fmllr=nn_fmllr_args("dev"),
    threads: workflow.cores
    benchmark:
        f"{EXP}/benchmarks/nn_decode_dev_{{model}}.tsv"
    log:
        f"{NN_DIR}/{{model}}/log/decode_dev.log",
    shell:
        "{STEP}.decode --conf '{params.conf}' --model-dir {EXP}/{ALI_FROM} --graph {EXP}/{ALI_FROM}/graph "
        "--nn {NN_DIR}/{wildcards.model} --split dev --cuts {input.cuts} --feats {input.feats} --sweep "
        "{params.fmllr} --out {NN_DIR}/{wildcards.model}/decode_dev --threads {threads} --log {log}"


rule nn_decode_test:
    """Hybrid decoding of test with dev's LM weight."""
    input:
        model=f"{NN_DIR}/{{model}}/final.pt",
        hclg=f"{EXP}/{ALI_FROM}/graph/HCLG.fst",
        feats=f"{NN_FEATS}/cuts_test.jsonl.gz",
        cmvn=nn_cmvn("test"),
        cuts=cuts("test"),
        fmllr=nn_fmllr_inputs("test"),
        best=f"{NN_DIR}/{{model}}/decode_dev/best_lm_weight.json",
    output:
        test_scores("nn/{model}"),
    params:
        conf=lambda wc: nn_conf(wc.model),
        fmllr=nn_fmllr_args("test"),
    threads: workflow.cores
    benchmark:
        f"{EXP}/benchmarks/nn_decode_test_{{model}}.tsv"
    log:
        f"{NN_DIR}/{{model}}/log/decode_test.log",
    shell:
        "{STEP}.decode --conf '{params.conf}' --model-dir {EXP}/{ALI_FROM} --graph {EXP}/{ALI_FROM}/graph "
        "--nn {NN_DIR}/{wildcards.model} --split test --cuts {input.cuts} --feats {input.feats} "
        "--lm-weight-from {input.best} {params.fmllr} --out {NN_DIR}/{wildcards.model}/decode_test --threads {threads} --log {log}"


# nn.tables.numbers: which of the paper's tables `tables` builds (all five by default; a CPU may take one or two)
TABLE_NUMBERS = sorted({int(n) for n in (NN_TABLES.get("numbers") or [1, 2, 3, 4, 5])})


rule tables:
    """The paper's Tables 1-5 (nn.tables.numbers): every row trained (widths x nn.tables.width_scale) and decoded,
    as md/csv/png."""
    input:
        [f"{NN_DIR}/t{r.table}r{r.index}/decode_{split}/{METRIC}.txt" for r in paper_rows() if r.table in TABLE_NUMBERS
         for split in ("dev", "test")],
    output:
        md=f"{EXP}/tables/tables.md",
        png=f"{EXP}/tables/tables.png",
    params:
        width=NN_TABLES.get("width_scale", 1.0),
        numbers=" ".join(map(str, TABLE_NUMBERS)),
    log:
        f"{EXP}/log/tables.log",
    shell:
        "{STEP}.paper_tables --nn-dir {NN_DIR} --out {EXP}/tables --corpus {RECIPE} --width-scale {params.width} "
        "--tables {params.numbers} --log {log}"
