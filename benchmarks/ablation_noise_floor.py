"""Is a quantizer_ablation.py row signal or noise? Tiny perturbations of one quantized w8a16 model.

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python benchmarks/ablation_noise_floor.py   # ~25 min, 2 cores

Quantizes the default model once (w8a16, 4 calibration sequences, CL 1024, as the ablation does),
then measures perplexity on the ablation's 3 windows with the RoPE-table quantizers replaced by
controls that change nothing a model could care about (×(1 ± 1e-6), ×(1 + 1e-5): float SmolLM2
does not move under them), and with the KV-cache quantizers off or at 16 bits over the same range.
The spread of the controls is the measure's noise floor: an ablation row inside it says nothing.
Output: benchmarks/results/ablation_noise_floor_w8a16.log (stdout). The run that wrote it also
saved the quantized folder to /tmp (dropped here).
"""
import time, torch, sys
from edge_llama import EdgeLlamaForCausalLM, load_tokenizer
from edge_llama.evaluation import evaluate
from edge_llama.quantization.aimet_engine import _named_quantizers
tok = load_tokenizer("DEFAULT")
model = EdgeLlamaForCausalLM.from_pretrained("DEFAULT", context_length=1024)
def ppl(m):
    return evaluate(m, "wikitext-ppl", tokenizer=tok, num_samples=3, context_length=1024, progress=False).metrics["perplexity"]
fp = ppl(model)
print("float", fp, flush=True)
t=time.time()
q = model.quantize("w8a16", num_samples=4, progress=False)
print("quantize s", time.time()-t, flush=True)
named = list(_named_quantizers(q))
io = q.__dict__["graph_io_quantizers"]
cosq, sinq = io["position_cos"], io["position_sin"]
kvq = {id(x): x for n,k,x in named if n.startswith("past_")}
def run(label, patches):
    for quant, fn in patches: quant.forward = fn
    try:
        p = ppl(q)
    finally:
        for quant, fn in patches: del quant.forward
    print(f"{label:40s} {p:.4f} {100*(p/fp-1):+.3f}%", flush=True)
ident = lambda x, *a, **k: x
def grid(lo, hi, bits=16):
    s=(hi-lo)/(2**bits-1)
    return lambda x,*a,**k: torch.round((x-lo)/s)*s+lo
def scaled(f):
    return lambda x,*a,**k: x*f
def kv16(qz):
    # symmetric 16-bit over the 8-bit quantizer's own range
    s = qz.get_scale().detach()*127/32767
    return lambda x,*a,**k: torch.clamp(torch.round(x/s), -32768, 32767)*s
run("all on", [])
run("cos/sin identity", [(cosq, ident), (sinq, ident)])
run("cos/sin float*(1+1e-6)", [(cosq, scaled(1+1e-6)), (sinq, scaled(1+1e-6))])
run("cos/sin float*(1-1e-6)", [(cosq, scaled(1-1e-6)), (sinq, scaled(1-1e-6))])
run("cos/sin float*(1+1e-5)", [(cosq, scaled(1+1e-5)), (sinq, scaled(1+1e-5))])
run("cos/sin own grid [-1,1] 16b", [(cosq, grid(-1,1)), (sinq, grid(-1,1))])
run("cos/sin fp16", [(cosq, lambda x,*a,**k: x.half().float()), (sinq, lambda x,*a,**k: x.half().float())])
run("kv identity", [(x, ident) for x in kvq.values()])
run("kv identity + cos/sin identity", [(x, ident) for x in kvq.values()]+[(cosq, ident), (sinq, ident)])
run("kv 16b same range", [(x, kv16(x)) for x in kvq.values()])
run("kv 16b + cos/sin identity", [(x, kv16(x)) for x in kvq.values()]+[(cosq, ident), (sinq, ident)])
