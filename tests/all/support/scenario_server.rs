//! A fake OpenAI-compatible model that plays a scripted scenario over real
//! HTTP and SSE: each request is matched to the scenario's conversation the
//! way a real model "knows" from its context, and the scripted turn is
//! streamed back in the OpenAI chunk format.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use memofab::config::ModelProfile;
use memofab::domain::AgentRole;
use memofab::engine::prompts::Prompts;
use memofab::llm::scenario::Scenario;
use memofab::llm::scripted::ScriptedProvider;
use memofab::llm::{
    ChatMessage, CompletionRequest, FinishReason, LlmProvider, ScriptKey, StreamEvent, ToolCall,
};
use serde_json::{Value, json};

use super::fake_llm::{chunked, sse};

/// First messages of the conversations seen, per role and task.
type Seen = HashMap<(AgentRole, Option<String>), Vec<String>>;

/// Recognises which scripted conversation an OpenAI request belongs to:
/// role from the system prompt (the shipped prompts), task from the brief,
/// attempt from how many conversations that role had on that task before.
pub struct Router {
    scripted: ScriptedProvider,
    prompts: Vec<(AgentRole, String)>,
    conversations: Mutex<Seen>,
}

impl Router {
    pub fn new(scenario: Scenario) -> Self {
        // The shipped prompts of every profile: a run may use either.
        let profiles = [ModelProfile::Standard, ModelProfile::Small]
            .map(|profile| Prompts::with_dirs(vec![]).with_profile(profile));
        Self {
            scripted: ScriptedProvider::new(Arc::new(scenario)),
            prompts: profiles
                .iter()
                .flat_map(|prompts| AgentRole::ALL.iter().map(|r| (*r, prompts.load(*r).text)))
                .collect(),
            conversations: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, body: &Value) -> ScriptKey {
        let messages = body["messages"].as_array().unwrap();
        let system = messages[0]["content"].as_str().unwrap();
        let role = self
            .prompts
            .iter()
            .find(|(_, p)| p == system)
            .map(|(r, _)| *r)
            .expect("known system prompt");
        let first = messages[1]["content"].as_str().unwrap().to_owned();
        let task = first
            .split("## Task ")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .map(str::to_owned)
            .filter(|_| !matches!(role, AgentRole::Planner | AgentRole::PlanReviewer));
        let mut seen = self.conversations.lock().unwrap();
        let list = seen.entry((role, task.clone())).or_default();
        let attempt = match list.iter().position(|f| *f == first) {
            Some(i) => i + 1,
            None => {
                list.push(first);
                list.len()
            }
        };
        ScriptKey {
            role,
            task: task.map(memofab::domain::TaskId::new),
            attempt: attempt as u32,
        }
    }

    /// The scripted turn for this chat-completions request body, as SSE
    /// chunks cut at odd places.
    pub fn reply(&self, body: &Value) -> Vec<Vec<u8>> {
        let key = self.key(body);
        let assistant_turns = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "assistant")
            .count();
        let request = CompletionRequest {
            model: "gpt-fake".into(),
            system: String::new(),
            messages: vec![
                ChatMessage::Assistant {
                    content: String::new(),
                    tool_calls: Vec::<ToolCall>::new()
                };
                assistant_turns
            ],
            tools: vec![],
            max_tokens: 0,
            temperature: None,
            reasoning_effort: None,
            script: key,
        };
        // A real model is asked for every task's tester; a scenario may
        // script only some: the others finish without tests.
        let events = if request.script.role == AgentRole::Tester
            && !self.scripted.scripts(&request.script)
        {
            vec![
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "call_finish".into(),
                    name: "finish".into(),
                },
                StreamEvent::ToolCallArgs {
                    index: 0,
                    fragment: r#"{"summary": "nothing to add"}"#.into(),
                },
                StreamEvent::Usage(Default::default()),
                StreamEvent::Finished(FinishReason::ToolCalls),
            ]
        } else {
            self.scripted
                .reply(&request)
                .expect("the scenario has this turn")
        };
        let mut data = Vec::new();
        let chunk = |delta: Value, finish: Option<&str>| {
            json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).to_string()
        };
        for event in events {
            data.push(match event {
                StreamEvent::TextDelta(t) => chunk(json!({"content": t}), None),
                StreamEvent::ReasoningDelta(t) => chunk(json!({"reasoning_content": t}), None),
                StreamEvent::ToolCallStart { index, id, name } => chunk(
                    json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    None,
                ),
                StreamEvent::ToolCallArgs { index, fragment } => {
                    chunk(json!({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}), None)
                }
                StreamEvent::Usage(u) => {
                    json!({"choices": [], "usage": {"prompt_tokens": u.input, "completion_tokens": u.output}}).to_string()
                }
                StreamEvent::Finished(reason) => {
                    let r = if reason == FinishReason::ToolCalls { "tool_calls" } else { "stop" };
                    chunk(json!({}), Some(r))
                }
            });
        }
        data.push("[DONE]".into());
        chunked(&sse(&data), 97)
    }
}
