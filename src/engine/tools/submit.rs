//! The submit tools (`submit_blueprint`, `submit_review`, ...): a call whose
//! arguments pass the tool's check ends the conversation with them.

use futures_util::future::BoxFuture;

use super::{Call, Tool, ToolOutcome, fail};
use crate::engine::error::EngineResult;
use crate::llm::ToolSpec;

/// What a submit call its check refused is answered with, after the tool's
/// name: memofab's words, which a verdict must not hand back.
pub const NOT_ACCEPTED: &str = " was not accepted. Fix these problems and call ";

/// A tool that ends the conversation with a structured result, such as
/// `submit_blueprint`. `check` returns the problems to send back, if any.
pub struct SubmitTool {
    pub spec: ToolSpec,
    #[allow(clippy::type_complexity)]
    pub check: Box<dyn Fn(&serde_json::Value) -> Result<(), String> + Send + Sync>,
}

impl SubmitTool {
    fn submit(&self, call: Call<'_>) -> ToolOutcome {
        let name = &self.spec.name;
        let arguments = match call.arguments.value() {
            Ok(v) => v,
            Err(e) => {
                return fail(format!(
                    "The arguments of {name} are not valid JSON ({e}). Send them again as one JSON object."
                ));
            }
        };
        match (self.check)(arguments) {
            Ok(()) => ToolOutcome::Submitted {
                arguments: arguments.clone(),
            },
            Err(problems) => fail(format!("{name}{NOT_ACCEPTED}{name} again:\n{problems}")),
        }
    }
}

impl Tool for SubmitTool {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    fn call<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, EngineResult<ToolOutcome>> {
        let outcome = self.submit(call);
        Box::pin(async move { Ok(outcome) })
    }
}
