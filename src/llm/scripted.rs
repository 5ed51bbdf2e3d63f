//! The scripted provider (filled in by the engine work).
