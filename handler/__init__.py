"""The Lambda edge: events in, validated requests, render, storage, responses out."""
