"""Versioned YAML pricebooks (contract section 4): ``model`` holds the types, ``loader``
reads and checks the files, ``litellm`` converts LiteLLM's price map."""
