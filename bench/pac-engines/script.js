function FindProxyForURL(url, host) {
  if (isPlainHostName(host) || dnsDomainIs(host, ".corp.example") || isInNet(host, "10.0.0.0", "255.0.0.0")) return "DIRECT";
  if (shExpMatch(host, "*.internal.*") || localHostOrDomainIs(host, "intranet.corp.example")) return "DIRECT";
  if (shExpMatch(url, "http://*") && dnsDomainLevels(host) > 3) return "PROXY a.corp.example:3128";
  return "PROXY parent.corp.example:3128; PROXY backup.corp.example:3128; DIRECT";
}
