import { defineMatrix } from './matrix.js';

defineMatrix(['ext4-no64bit', 'ext4-noflexbg', 'ext4-metabg', 'ext4-inline', 'ext4-nocsum', 'ext4-bigalloc', 'ext4-bigalloc-b1024', 'gpt', 'mbr']);
