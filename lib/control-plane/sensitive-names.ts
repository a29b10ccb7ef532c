/**
 * Name fragments that make a variable's value secret, after Airflow's default sensitive field
 * names (`[core] sensitive_var_conn_names` adds to them there; `extraSensitiveNames` here).
 */
export const DEFAULT_SENSITIVE_NAMES: readonly string[] = [
  'access_token',
  'api_key',
  'apikey',
  'authorization',
  'passphrase',
  'passwd',
  'password',
  'private_key',
  'secret',
  'token',
  'keyfile_dict',
  'service_account',
];

/**
 * True when `name` contains one of the sensitive fragments, case-insensitively (so `db_password`,
 * `SLACK_TOKEN` and `aws_secret_access_key` are all secret), as Airflow's `should_hide_value_for_key`.
 */
export function isSensitiveName(name: string, extraSensitiveNames: readonly string[] = []): boolean {
  if (typeof name !== 'string') return false;
  const lower = name.trim().toLowerCase();
  return [...DEFAULT_SENSITIVE_NAMES, ...extraSensitiveNames].some((fragment) => fragment !== '' && lower.includes(fragment.toLowerCase()));
}
