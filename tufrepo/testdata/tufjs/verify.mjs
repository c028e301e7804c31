// Verifies a target of a Steward TUF repository with tuf-js, an
// independent TUF client: refresh from the trusted root (root rotations,
// timestamp, snapshot, targets with their signatures, versions and
// expiries), then download the hash-prefixed target and check its length
// and hashes. The device plane needs the device's client certificate, so
// the fetcher is node's https with it.
//
//   node verify.mjs METADATA_URL TARGET_PATH ROOT_JSON CERT_PEM KEY_PEM CA_PEM WORK_DIR
//
// Prints the verified target's path and exits 0; any failure exits 1.
import { readFileSync, mkdirSync, copyFileSync } from 'node:fs';
import { request } from 'node:https';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { Updater, BaseFetcher } from 'tuf-js';

// tuf-js tells "no newer root" from a failure by its own error class,
// which its index does not export.
const { DownloadHTTPError } = createRequire(import.meta.url)('tuf-js/dist/error.js');

const [metadataUrl, targetPath, rootFile, certFile, keyFile, caFile, workDir] = process.argv.slice(2);
if (!workDir) {
  console.error('usage: node verify.mjs METADATA_URL TARGET_PATH ROOT_JSON CERT_PEM KEY_PEM CA_PEM WORK_DIR');
  process.exit(2);
}
const tls = { cert: readFileSync(certFile), key: readFileSync(keyFile), ca: readFileSync(caFile) };

class MTLSFetcher extends BaseFetcher {
  fetch(url) {
    return new Promise((resolve, reject) => {
      const req = request(url, { ...tls, method: 'GET' }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new DownloadHTTPError(`GET ${url}: HTTP ${res.statusCode}`, res.statusCode));
          return;
        }
        resolve(Readable.toWeb(res));
      });
      req.on('error', reject);
      req.end();
    });
  }
}

const metadataDir = join(workDir, 'metadata');
const targetDir = join(workDir, 'targets');
mkdirSync(metadataDir, { recursive: true });
mkdirSync(targetDir, { recursive: true });
copyFileSync(rootFile, join(metadataDir, 'root.json'));

try {
  const updater = new Updater({
    metadataDir,
    metadataBaseUrl: metadataUrl,
    targetDir,
    targetBaseUrl: metadataUrl + '/targets',
    fetcher: new MTLSFetcher(),
  });
  await updater.refresh();
  const info = await updater.getTargetInfo(targetPath);
  if (!info) {
    throw new Error(`target ${targetPath} is not in the signed targets`);
  }
  const file = await updater.downloadTarget(info);
  console.log(file);
} catch (err) {
  console.error(`tuf-js: ${err.message}`);
  process.exit(1);
}
