"""The Gradio face: rendering and handlers over the engine; no engine logic lives here."""
