//! The driver managers also work with the pools teams already run: bb8 and deadpool
//! (cargo features `bb8` and `deadpool`). The benchmarks use this to compare pool cores on
//! exactly the same connections.
//!
//! Each follows its pool's usual adapters: bb8's `is_valid` pings (bb8 calls it on every
//! checkout unless `test_on_check_out(false)`), deadpool's `recycle` only looks for a broken
//! connection, as deadpool-postgres does by default.
//!
//! ```
//! # #[cfg(all(feature = "bb8", feature = "sqlite"))]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use longlink_pool::db::SqliteManager;
//! let pool = bb8::Pool::builder().max_size(4).build(SqliteManager::new("sqlite://:memory:")?).await?;
//! let conn = pool.get().await?;
//! # Ok(()) }
//! ```

macro_rules! adapters {
    ($manager:ty) => {
        #[cfg(feature = "bb8")]
        impl bb8::ManageConnection for $manager {
            type Connection = <$manager as crate::Manager>::Connection;
            type Error = <$manager as crate::Manager>::Error;

            async fn connect(&self) -> Result<Self::Connection, Self::Error> {
                crate::Manager::connect(self).await
            }

            async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
                crate::Manager::check(self, conn).await
            }

            fn has_broken(&self, conn: &mut Self::Connection) -> bool {
                crate::Manager::is_broken(self, conn)
            }
        }

        #[cfg(feature = "deadpool")]
        impl deadpool::managed::Manager for $manager {
            type Type = <$manager as crate::Manager>::Connection;
            type Error = <$manager as crate::Manager>::Error;

            async fn create(&self) -> Result<Self::Type, Self::Error> {
                crate::Manager::connect(self).await
            }

            async fn recycle(
                &self,
                conn: &mut Self::Type,
                _: &deadpool::managed::Metrics,
            ) -> deadpool::managed::RecycleResult<Self::Error> {
                crate::Manager::check(self, conn)
                    .await
                    .map_err(deadpool::managed::RecycleError::Backend)
            }
        }
    };
}

#[cfg(feature = "mysql")]
adapters!(super::MysqlManager);
#[cfg(feature = "postgres")]
adapters!(super::PgManager);
#[cfg(feature = "sqlite")]
adapters!(super::SqliteManager);
