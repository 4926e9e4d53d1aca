//! The `users` table: registered identities.

use sqlx::Row;
use sqlx::any::AnyRow;
use zgrid_types::directory::{User, UserRegistration};
use zgrid_types::{PublicKey, UserId};

use super::{Db, DbError, DbResult, Tx};

fn user(row: &AnyRow) -> DbResult<User> {
    let key: String = row.try_get("public_key")?;
    Ok(User {
        id: row.try_get::<i64, _>("id")? as UserId,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        public_key: key.parse().map_err(|_| DbError::Corrupt("users.public_key".into()))?,
        created_at: row.try_get("created_at")?,
    })
}

/// Register a user; fails with a unique violation when the name or key is taken.
pub async fn insert(tx: &mut Tx, reg: &UserRegistration, now: i64) -> DbResult<User> {
    let row = sqlx::query(
        "INSERT INTO users (name, email, public_key, created_at) VALUES ($1, $2, $3, $4)
         RETURNING id, name, email, public_key, created_at",
    )
    .bind(&reg.name)
    .bind(&reg.email)
    .bind(reg.public_key.to_string())
    .bind(now)
    .fetch_one(tx.conn().await?)
    .await?;
    user(&row)
}

/// The user with this id.
pub async fn by_id(db: &Db, id: UserId) -> DbResult<Option<User>> {
    let row = sqlx::query("SELECT * FROM users WHERE id = $1").bind(id as i64).fetch_optional(db.pool()).await?;
    row.as_ref().map(user).transpose()
}

/// User `id`'s public key (remembered once read: it never changes).
pub async fn key_of(db: &Db, id: UserId) -> DbResult<Option<PublicKey>> {
    if let Some(key) = db.known().keys.get(&id) {
        return Ok(Some(key));
    }
    let user = by_id(db, id).await?;
    if let Some(user) = &user {
        db.known().keys.insert(user.id, user.public_key);
    }
    Ok(user.map(|u| u.public_key))
}

/// The user with this key.
pub async fn by_key(db: &Db, key: &PublicKey) -> DbResult<Option<User>> {
    let row = sqlx::query("SELECT * FROM users WHERE public_key = $1")
        .bind(key.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(user).transpose()
}

/// The user with this name.
pub async fn by_name(db: &Db, name: &str) -> DbResult<Option<User>> {
    let row = sqlx::query("SELECT * FROM users WHERE name = $1").bind(name).fetch_optional(db.pool()).await?;
    row.as_ref().map(user).transpose()
}
