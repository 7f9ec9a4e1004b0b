#!/usr/bin/env python3
"""Loads an exported folder with Hugging Face transformers and reports what the export test
compares with Ferrum: the mean next-token loss on given token sequences, the ids the exported
tokenizer gives a text, and whether the head is tied to the embeddings.

Usage: hf_loss.py DIR REQUEST.json   (REQUEST: {"sequences": [[ids...], ...], "text": "..."})
Prints one JSON object on stdout.
"""

import json
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    folder, request = sys.argv[1], json.load(open(sys.argv[2]))
    model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    model.eval()
    ids = torch.tensor(request["sequences"], dtype=torch.long)
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # What a user types first: generate from the tokenizer's whole output (transformers 4.x
    # refuses token_type_ids the model does not take).
    prompt = tokenizer(request["text"][:16], return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    print(json.dumps({
        "transformers": transformers.__version__,
        "loss": loss,
        "text_ids": tokenizer(request["text"], add_special_tokens=False)["input_ids"],
        "eos_token_id": tokenizer.eos_token_id,
        "input_names": sorted(prompt.keys()),
        "generated": generated.shape[1] - prompt["input_ids"].shape[1],
        "tied": head.data_ptr() == embed.data_ptr(),
    }))


if __name__ == "__main__":
    main()
