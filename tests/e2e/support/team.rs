//! A team with an owner, made through the API, and what D1 holds for its credential.

use super::{new_key, new_team, token, unique_user, Call, Reply, Worker};
use edge_credentials::core::crypto::{credential_aad, KeyRing};
use serde_json::Value;

pub const CREDENTIAL_PATH: &str = "/api/v1/cloud-providers/comfy-cloud";

pub struct Team {
    pub id: String,
    pub owner: String,
}

impl Team {
    pub fn new(w: &Worker) -> Team {
        let owner = unique_user("owner");
        Team {
            id: new_team(w, &owner),
            owner,
        }
    }

    /// `call`, made as the team's owner.
    pub fn call<'w>(&self, call: Call<'w>) -> Call<'w> {
        call.bearer(&token(&self.owner))
            .header("X-Team-ID", &self.id)
    }

    pub fn put(&self, w: &Worker, body: Value) -> Reply {
        self.call(Call::put(w, CREDENTIAL_PATH)).json(&body).send()
    }

    pub fn get(&self, w: &Worker) -> Reply {
        self.call(Call::get(w, CREDENTIAL_PATH)).send()
    }

    /// A new API key of the team, as `POST /api/v1/api-keys` with `body` returns it.
    pub fn key(&self, w: &Worker, body: Value) -> String {
        self.key_and_id(w, body).0
    }

    /// [`Team::key`], and the key's id: `(key, id)`.
    pub fn key_and_id(&self, w: &Worker, body: Value) -> (String, String) {
        let created = new_key(w, &self.owner, &self.id, body);
        let field = |name: &str| created[name].as_str().unwrap().to_string();
        (field("key"), field("id"))
    }

    /// The stored credential row, read from the D1 file (null when there is none).
    pub fn row(&self, w: &Worker) -> Value {
        w.d1(&format!(
            "SELECT * FROM credentials WHERE team_id = '{}' AND provider = 'comfy_cloud'",
            self.id
        ))
        .into_iter()
        .next()
        .unwrap_or(Value::Null)
    }

    /// The audit events about the team's credential (those naming a provider): team,
    /// member and key events are left out.
    pub fn audit_count(&self, w: &Worker) -> u64 {
        w.d1(&format!(
            "SELECT COUNT(*) AS n FROM audit_events WHERE team_id = '{}' AND provider IS NOT NULL",
            self.id
        ))[0]["n"]
            .as_u64()
            .unwrap()
    }

    /// The plaintext the stored row decrypts to, with the dev key ring.
    pub fn decrypted(&self, w: &Worker) -> String {
        decrypt(&dev_ring(), &self.id, &self.row(w))
    }
}

/// The key ring of `.dev.vars`, the one the worker under test uses.
pub fn dev_ring() -> KeyRing {
    KeyRing::from_config(&super::dev_var("CREDENTIAL_KEYS")).unwrap()
}

pub fn decrypt(ring: &KeyRing, team: &str, row: &Value) -> String {
    let blob = row["ciphertext"].as_str().expect("a sealed key");
    String::from_utf8(
        ring.open(blob, &credential_aad(team, "comfy_cloud"))
            .unwrap(),
    )
    .unwrap()
}
