"""One module per 2030.5 function set: thin routes that read a view and return XML."""
